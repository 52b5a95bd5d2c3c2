//go:build !linux

package freeport

// mp runs only on Linux. Off Linux, this import makes the build stop at
// the root package, whose error says so (see linuxonly.go in the root).
import _ "github.com/go-mp/mp"

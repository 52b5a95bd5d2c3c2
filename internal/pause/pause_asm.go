//go:build linux && (amd64 || arm64)

package pause

// hint is one spin-wait instruction.
func hint()

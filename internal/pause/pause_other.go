//go:build linux && !amd64 && !arm64

package pause

// hint does nothing where no spin-wait instruction is known.
func hint() {}

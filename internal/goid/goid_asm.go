//go:build linux && (amd64 || arm64)

package goid

// getg returns the address of the runtime's descriptor of the calling
// goroutine, unique among live goroutines.
func getg() uintptr

func get() uint64 { return uint64(getg()) }

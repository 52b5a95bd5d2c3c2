//go:build linux

// Package goid identifies the calling goroutine, which Go does not
// otherwise expose: an RLock needs to know which goroutine holds it.
package goid

// Get returns a value that identifies the calling goroutine among the
// goroutines alive in this process. (A goroutine that has exited may have
// its value reused by a new one.)
func Get() uint64 { return get() }

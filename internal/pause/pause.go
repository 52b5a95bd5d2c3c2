//go:build linux

// Package pause tells the CPU that the caller is spinning on a shared
// word, so that it yields the core's resources to its sibling thread and
// reads the word less often (x86 PAUSE, arm64 YIELD).
package pause

// N executes the spin-wait hint n times.
func N(n int) {
	for range n {
		hint()
	}
}

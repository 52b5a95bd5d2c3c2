//go:build linux

package mp

import "testing"

// OnImapChunk has fn run each time an Imap chunk's outcome is handed to
// its loop (from the goroutine that hands it), until the test ends.
func OnImapChunk(t testing.TB, fn func()) {
	testHookImapChunk.Store(&fn)
	t.Cleanup(func() { testHookImapChunk.Store(nil) })
}

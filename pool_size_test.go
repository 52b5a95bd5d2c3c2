//go:build linux

package mp

import (
	"testing"
	"unsafe"
)

// A call of ApplyAsync, of which a burst has thousands in flight, each in
// fresh memory, fits a size class of 160 bytes (192 before: a task was
// 136 bytes, with a word per flag and its kill timer inline, and the call
// had its callbacks and pool inline), and its task is 112 bytes.
func TestApplyCallSize(t *testing.T) {
	if n := unsafe.Sizeof(task{}); n > 112 {
		t.Errorf("a task is %d bytes, want at most 112", n)
	}
	if n := unsafe.Sizeof(applyCall[int]{}); n > 160 {
		t.Errorf("an applyCall[int] is %d bytes, want at most 160", n)
	}
}

// An AsyncResult of a word-sized result, one per ApplyAsync, is 32 bytes
// (48 before, with a lock of its own and its error inline).
func TestAsyncResultSize(t *testing.T) {
	if n := unsafe.Sizeof(AsyncResult[int]{}); n > 32 {
		t.Errorf("an AsyncResult[int] is %d bytes, want at most 32", n)
	}
}

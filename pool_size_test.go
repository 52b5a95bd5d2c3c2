//go:build linux

package mp

import (
	"testing"
	"unsafe"
)

// A call of ApplyAsync, of which a burst has thousands in flight, each in
// fresh memory, fits a size class of 176 bytes (192 before: a task was
// 136 bytes, the call had its callbacks and pool inline), and its task
// is 128 bytes.
func TestApplyCallSize(t *testing.T) {
	if n := unsafe.Sizeof(task{}); n > 128 {
		t.Errorf("a task is %d bytes, want at most 128", n)
	}
	if n := unsafe.Sizeof(applyCall[int]{}); n > 176 {
		t.Errorf("an applyCall[int] is %d bytes, want at most 176", n)
	}
}

// An AsyncResult of a word-sized result, one per ApplyAsync, is 32 bytes
// (48 before, with a lock of its own and its error inline).
func TestAsyncResultSize(t *testing.T) {
	if n := unsafe.Sizeof(AsyncResult[int]{}); n > 32 {
		t.Errorf("an AsyncResult[int] is %d bytes, want at most 32", n)
	}
}

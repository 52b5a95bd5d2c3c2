//go:build linux && !amd64

package memcopy

import "unsafe"

// canStream is false where no streaming loop is written: Stream copies.
const canStream = false

const streamUnit = 128

// streamCopy is never called where canStream is false; it copies plainly.
func streamCopy(dst, src unsafe.Pointer, n uintptr) {
	copy(unsafe.Slice((*byte)(dst), n), unsafe.Slice((*byte)(src), n))
}

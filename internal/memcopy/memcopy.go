//go:build linux

// Package memcopy copies large blocks into shared memory with streaming
// (non-temporal) stores where the CPU has them.
//
// A block written by one process and then read by another is better sent
// past the writer's caches: the reader then takes it from memory instead of
// pulling each line out of the writer's cache, and the writer's next write
// need not take every line back. Go's copy streams only from 1 MiB up; an
// 800 KB message between two processes moves 1.5 to 2 times faster when
// the writer streams it (float_channel). The reader should copy plainly,
// since it reads what it copied next.
package memcopy

import "unsafe"

// streamAbove is the size from which Stream streams: below it the block
// fits well within a core's caches and a plain copy is as fast.
const streamAbove = 64 << 10

// blockSize is how much one call into the streaming loop copies, so that
// a long copy still lets the goroutine be preempted between blocks.
const blockSize = 64 << 10

// Stream copies src into dst (min of their lengths, like copy) and
// returns the number of bytes copied. The two must not overlap.
func Stream(dst, src []byte) int {
	n := min(len(dst), len(src))
	if n < streamAbove || !canStream {
		return copy(dst, src[:n])
	}
	// Align the destination to the streaming stores' 32 bytes.
	head := int((32 - uintptr(unsafe.Pointer(&dst[0]))%32) % 32)
	copy(dst[:head], src[:head])
	off := head
	for n-off >= streamUnit {
		m := min(blockSize, (n-off)/streamUnit*streamUnit)
		streamCopy(unsafe.Pointer(&dst[off]), unsafe.Pointer(&src[off]), uintptr(m))
		off += m
	}
	copy(dst[off:n], src[off:n])
	return n
}

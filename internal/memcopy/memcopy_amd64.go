//go:build linux

package memcopy

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// canStream says that the AVX2 streaming loop can run here.
var canStream = cpu.X86.HasAVX2

// streamUnit is the bytes one turn of the streaming loop copies.
const streamUnit = 128

// streamCopy copies n bytes, a multiple of streamUnit, from src to dst
// (32-byte aligned) with streaming stores, then fences them.
//
//go:noescape
func streamCopy(dst, src unsafe.Pointer, n uintptr)

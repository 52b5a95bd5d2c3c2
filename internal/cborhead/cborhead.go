//go:build linux

// Package cborhead reads and writes the head of a CBOR data item (RFC
// 8949 section 3): its major type and argument, the count, length or value
// that follows the initial byte. It serves code that handles a few simple
// items without the codec: the manager's wire format, and the byte strings
// a Queue copies straight into and out of shared memory.
package cborhead

import (
	"encoding/binary"
	"math"
)

// Append appends the head of an item of major type major with argument
// arg, in its shortest form, as the codec writes it.
func Append(b []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(b, m|byte(arg))
	case arg <= math.MaxUint8:
		return append(b, m|24, byte(arg))
	case arg <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(arg))
	case arg <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(arg))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), arg)
}

// Parse parses the head of the item at the start of b: its major type,
// argument and the head's length. ok is false for a head that is
// truncated, reserved (additional information 28 to 30) or of indefinite
// length.
func Parse(b []byte) (major byte, arg uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, 0, false
	}
	major, ai := b[0]>>5, b[0]&31
	switch {
	case ai < 24:
		return major, uint64(ai), 1, true
	case ai == 24 && len(b) >= 2:
		return major, uint64(b[1]), 2, true
	case ai == 25 && len(b) >= 3:
		return major, uint64(binary.BigEndian.Uint16(b[1:])), 3, true
	case ai == 26 && len(b) >= 5:
		return major, uint64(binary.BigEndian.Uint32(b[1:])), 5, true
	case ai == 27 && len(b) >= 9:
		return major, binary.BigEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, 0, false
}

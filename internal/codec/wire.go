//go:build linux

package codec

import (
	"encoding/binary"
	"errors"
	"math"
)

// A reader and writer of CBOR items (RFC 8949) for formats written by
// hand, where the codec's reflection would cost more than the work: the
// manager's protocol (a request is an array of a few integers, strings
// and opaque values, answered in about a microsecond), the byte strings a
// Queue copies straight into and out of shared memory, and chunks of
// strings a pool worker decodes in two passes. Items are written as the
// codec writes them (shortest heads, definite lengths), so that either
// side may use the codec instead.

// The major types of CBOR items.
const (
	MajorUint   byte = 0
	MajorNegInt byte = 1
	MajorBytes  byte = 2
	MajorText   byte = 3
	MajorArray  byte = 4
	MajorMap    byte = 5
	MajorTag    byte = 6
	MajorSimple byte = 7
)

// The simple values the hand-written formats use.
const (
	False     = 0xf4
	True      = 0xf5
	Null      = 0xf6
	Undefined = 0xf7
)

// ErrMalformed reports an item that is truncated, reserved, of indefinite
// length, or not of the major type expected.
var ErrMalformed = errors.New("malformed CBOR")

// ErrTooDeep reports an item nested deeper than MaxDepth.
var ErrTooDeep = errors.New("CBOR nested too deeply")

// AppendHead appends the head of an item of major type major with
// argument arg, in its shortest form, as the codec writes it.
func AppendHead(b []byte, major byte, arg uint64) []byte {
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

// ParseHead parses the head of the item at the start of b: its major
// type, argument (a count, length or value) and the head's length. ok is
// false for a head that is truncated, reserved (additional information 28
// to 30) or of indefinite length.
func ParseHead(b []byte) (major byte, arg uint64, n int, ok bool) {
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

// Head is ParseHead with an error.
func Head(b []byte) (major byte, arg uint64, n int, err error) {
	major, arg, n, ok := ParseHead(b)
	if !ok {
		return 0, 0, 0, ErrMalformed
	}
	return major, arg, n, nil
}

// Skip returns the length of the well-formed item at the start of b,
// found at nesting depth depth (0 for a whole message).
func Skip(b []byte, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, ErrTooDeep
	}
	major, arg, n, err := Head(b)
	if err != nil {
		return 0, err
	}
	switch major {
	case MajorUint, MajorNegInt:
	case MajorBytes, MajorText:
		if arg > uint64(len(b)-n) {
			return 0, ErrMalformed
		}
		n += int(arg)
	case MajorArray, MajorMap:
		if major == MajorMap {
			if arg > math.MaxUint64/2 {
				return 0, ErrMalformed
			}
			arg *= 2
		}
		for ; arg > 0; arg-- {
			m, err := Skip(b[n:], depth+1)
			if err != nil {
				return 0, err
			}
			n += m
		}
	case MajorTag:
		m, err := Skip(b[n:], depth+1)
		if err != nil {
			return 0, err
		}
		n += m
	case MajorSimple:
		if b[0]&31 == 24 && arg < 32 {
			return 0, ErrMalformed
		}
	}
	return n, nil
}

// ReadUint reads an unsigned integer item and returns it and its length.
func ReadUint(b []byte) (uint64, int, error) {
	major, arg, n, err := Head(b)
	if err != nil || major != MajorUint {
		return 0, 0, ErrMalformed
	}
	return arg, n, nil
}

// ReadInt reads an integer item that fits an int64.
func ReadInt(b []byte) (int64, error) {
	major, arg, _, err := Head(b)
	if err != nil || arg > math.MaxInt64 {
		return 0, ErrMalformed
	}
	switch major {
	case MajorUint:
		return int64(arg), nil
	case MajorNegInt:
		return -1 - int64(arg), nil
	}
	return 0, ErrMalformed
}

// ReadText reads a text string item.
func ReadText(b []byte) (string, error) {
	major, arg, n, err := Head(b)
	if err != nil || major != MajorText || arg > uint64(len(b)-n) {
		return "", ErrMalformed
	}
	return string(b[n : n+int(arg)]), nil
}

// ReadBytes reads a byte string item, without copying.
func ReadBytes(b []byte) ([]byte, error) {
	major, arg, n, err := Head(b)
	if err != nil || major != MajorBytes || arg > uint64(len(b)-n) {
		return nil, ErrMalformed
	}
	return b[n : n+int(arg)], nil
}

// IsNull reports whether the item is null (or undefined).
func IsNull(b []byte) bool { return len(b) == 1 && (b[0] == Null || b[0] == Undefined) }

// SplitArray parses an array of well-formed items at the start of b,
// appends each item's bytes to dst and returns the array's length. The
// items alias b.
func SplitArray(dst [][]byte, b []byte) ([][]byte, int, error) {
	major, count, n, err := Head(b)
	if err != nil || major != MajorArray || count > uint64(len(b)) {
		return dst, 0, ErrMalformed
	}
	for ; count > 0; count-- {
		m, err := Skip(b[n:], 1)
		if err != nil {
			return dst, 0, err
		}
		dst = append(dst, b[n:n+m])
		n += m
	}
	return dst, n, nil
}

// SplitMessage parses a whole message, an array of items (see
// SplitArray).
func SplitMessage(dst [][]byte, b []byte) ([][]byte, error) {
	dst, n, err := SplitArray(dst, b)
	if err != nil {
		return dst, err
	}
	if n != len(b) {
		return dst, ErrMalformed
	}
	return dst, nil
}

// AppendUint appends an unsigned integer item.
func AppendUint(b []byte, v uint64) []byte { return AppendHead(b, MajorUint, v) }

// AppendInt appends an integer item.
func AppendInt(b []byte, v int64) []byte {
	if v < 0 {
		return AppendHead(b, MajorNegInt, uint64(-1-v))
	}
	return AppendHead(b, MajorUint, uint64(v))
}

// AppendText appends a text string item.
func AppendText(b []byte, s string) []byte {
	return append(AppendHead(b, MajorText, uint64(len(s))), s...)
}

// AppendBool appends true or false.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, True)
	}
	return append(b, False)
}

// EachTagged calls fn with each item tagged number (its tag's head
// included) inside the well-formed item b, without looking inside those.
func EachTagged(b []byte, number uint64, fn func(item []byte)) {
	eachTagged(b, number, 0, fn)
}

func eachTagged(b []byte, number uint64, depth int, fn func(item []byte)) int {
	major, arg, n, err := Head(b)
	if err != nil || depth > MaxDepth {
		return len(b)
	}
	switch major {
	case MajorBytes, MajorText:
		n += int(arg)
	case MajorArray, MajorMap:
		if major == MajorMap {
			arg *= 2
		}
		for ; arg > 0 && n < len(b); arg-- {
			n += eachTagged(b[n:], number, depth+1, fn)
		}
	case MajorTag:
		if arg == number {
			m, err := Skip(b[n:], depth+1)
			if err != nil {
				return len(b)
			}
			fn(b[:n+m])
			return n + m
		}
		n += eachTagged(b[n:], number, depth+1, fn)
	}
	return min(n, len(b))
}

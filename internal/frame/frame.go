//go:build linux

// Package frame holds the message framing that CPython's
// multiprocessing.connection uses on the wire: a big-endian signed 32-bit
// length before each message, or -1 followed by a big-endian unsigned 64-bit
// length for messages longer than 2^31-1 bytes.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ShortLimit is the largest length the 4-byte header can carry.
const ShortLimit = math.MaxInt32

// MaxHeader is the longest header: 4 bytes of -1 and 8 bytes of length.
const MaxHeader = 12

// ErrBadLength reports a header whose length is negative (other than the
// -1 marker) or does not fit in an int64.
var ErrBadLength = errors.New("mp: bad message length in frame header")

// AppendHeader appends the header for an n-byte message to dst.
func AppendHeader(dst []byte, n int) []byte {
	if n > ShortLimit {
		dst = binary.BigEndian.AppendUint32(dst, 0xFFFFFFFF)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// Parse reads a header from the start of b. It returns the message length
// and the number of header bytes, or need > 0 when b holds only a prefix of
// the header and need more bytes are required in all.
func Parse(b []byte) (length int64, hdr int, need int, err error) {
	if len(b) < 4 {
		return 0, 0, 4, nil
	}
	v := int32(binary.BigEndian.Uint32(b))
	switch {
	case v >= 0:
		return int64(v), 4, 0, nil
	case v == -1:
		if len(b) < MaxHeader {
			return 0, 0, MaxHeader, nil
		}
		u := binary.BigEndian.Uint64(b[4:])
		if u > math.MaxInt64 {
			return 0, 0, 0, fmt.Errorf("%w: %d", ErrBadLength, u)
		}
		return int64(u), MaxHeader, 0, nil
	default:
		return 0, 0, 0, fmt.Errorf("%w: %d", ErrBadLength, v)
	}
}

// FirstChunk is the most a receiver allocates for a message before its
// bytes arrive: a peer's announced length is a claim, and memory should
// follow the bytes actually sent, not the claim.
const FirstChunk = 1 << 20

// Grow returns buf, which holds the first len(buf) bytes of an n-byte
// message, with room for more: its capacity doubles (from FirstChunk, or
// n if smaller), never past n. A receiver that fills each room before it
// grows again has allocated at most about twice what has arrived.
func Grow(buf []byte, n int64) []byte {
	next := int64(FirstChunk)
	if c := int64(cap(buf)); c > 0 {
		next = max(2*c, next)
	}
	next = min(next, n)
	if next <= int64(cap(buf)) {
		return buf
	}
	grown := make([]byte, len(buf), next)
	copy(grown, buf)
	return grown
}

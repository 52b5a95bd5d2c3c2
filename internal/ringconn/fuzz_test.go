//go:build linux

package ringconn

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/connerr"
)

// FuzzRingMemory lets a peer leave anything in the shared memory: after
// some honest traffic (which sets this side's own view of the indices),
// the fuzzer's words are written over the memory, headers and data
// alike; then this side receives until the stream ends and sends. Nothing
// may panic or wait for ever:
// the peer has closed, and its socket's end, which it cannot fake, ends
// both the receive and a send that waits for room.
func FuzzRingMemory(f *testing.F) {
	// A poke is a word's index in the memory, then the word.
	poke := func(off int, v uint64) []byte {
		b := binary.LittleEndian.AppendUint16(nil, uint16(off/8))
		return binary.LittleEndian.AppendUint64(b, v)
	}
	headIn := headerSize + RingSize + offHead // the head b reads
	f.Add(uint16(0), uint16(0), poke(headIn, ^uint64(0)), uint32(10), int64(0))
	f.Add(uint16(100), uint16(7), poke(headIn, 1<<20), uint32(RingSize), int64(50))
	f.Add(uint16(3), uint16(RingSize-1), poke(offTail, ^uint64(0)), uint32(3*RingSize), int64(0))
	f.Add(uint16(9), uint16(9), append(poke(headerSize+RingSize+headerSize, 1<<30), poke(headIn, 8+40)...), uint32(0), int64(1))
	f.Add(uint16(1), uint16(1), poke(headerSize+RingSize+offClosed, 0), uint32(2*RingSize), int64(0))
	f.Fuzz(func(t *testing.T, toB, toA uint16, pokes []byte, send uint32, limit int64) {
		a, b := pair(t)
		// Honest traffic first, read by both sides.
		for _, d := range [][2]*Conn{{a, b}, {b, a}} {
			n := int(toB)
			if d[0] == b {
				n = int(toA)
			}
			sent := make(chan error, 1)
			go func() { sent <- d[0].SendBytes(make([]byte, n)) }()
			if _, err := d[1].RecvBytesInto(make([]byte, n), 0); err != nil {
				t.Fatal(err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
		}
		b.SetLimit(limit)
		a.Close()                         // the peer's socket ends: receives cannot wait for ever
		base := unsafe.Pointer(a.in.head) // the start of the memory
		for ; len(pokes) >= 10; pokes = pokes[10:] {
			off := uintptr(binary.LittleEndian.Uint16(pokes)) % (MemSize / 8) * 8
			(*atomic.Uint64)(unsafe.Add(base, off)).Store(binary.LittleEndian.Uint64(pokes[2:]))
		}
		for i := 0; ; i++ {
			if i > RingSize {
				t.Fatal("more messages than the ring could hold")
			}
			_, err := b.RecvBytesInto(make([]byte, 64), 0)
			var short *connerr.BufferTooShortError
			if err != nil && !errors.As(err, &short) && !errors.Is(err, connerr.ErrMessageTooLong) {
				break
			}
		}
		// A full ring that nothing frees: the peer's socket has ended,
		// whatever its memory says.
		done := make(chan error, 1)
		go func() { done <- b.SendBytes(make([]byte, send%(4*RingSize))) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Close()
			t.Fatal("a send to a peer that closed does not return")
		}
	})
}

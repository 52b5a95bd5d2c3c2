//go:build linux

package memcopy

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestStreamMatchesCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 1<<20+300)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	sizes := []int{0, 1, 31, streamAbove - 1, streamAbove, streamAbove + 1,
		streamAbove + 127, blockSize*3 + 5, 1 << 20}
	for range 20 {
		sizes = append(sizes, r.IntN(1<<20))
	}
	for _, n := range sizes {
		for _, off := range []int{0, 1, 7, 31, 33, 100} {
			dst := make([]byte, n+off+64)
			for i := range dst {
				dst[i] = 0xAA
			}
			s := src[off%5 : off%5+n]
			if got := Stream(dst[off:off+n], s); got != n {
				t.Fatalf("n=%d off=%d: copied %d", n, off, got)
			}
			if !bytes.Equal(dst[off:off+n], s) {
				t.Fatalf("n=%d off=%d: wrong bytes", n, off)
			}
			for i, b := range append(dst[:off:off], dst[off+n:]...) {
				if b != 0xAA {
					t.Fatalf("n=%d off=%d: byte %d outside the destination written", n, off, i)
				}
			}
		}
	}
}

func TestStreamShorterSide(t *testing.T) {
	src := bytes.Repeat([]byte{1, 2, 3}, streamAbove)
	dst := make([]byte, streamAbove+10)
	if n := Stream(dst, src); n != len(dst) || !bytes.Equal(dst, src[:len(dst)]) {
		t.Fatalf("short dst: copied %d", n)
	}
	dst = make([]byte, len(src)+100)
	if n := Stream(dst, src); n != len(src) || !bytes.Equal(dst[:n], src) || dst[n] != 0 {
		t.Fatalf("short src: copied %d", n)
	}
}

func BenchmarkStream(b *testing.B) {
	src := make([]byte, 800_000)
	dst := make([]byte, len(src))
	b.Run("Stream", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			Stream(dst, src)
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			copy(dst, src)
		}
	})
}

//go:build linux

package prefault

import (
	"bytes"
	"testing"
)

// Populating pages leaves what is in them, written or not, as it was.
func TestBytesKeepsContents(t *testing.T) {
	for _, n := range []int{0, 100, Above - 1, Above, Above + 4097, 3 << 20} {
		b := make([]byte, n)
		for i := 0; i < n; i += 3 {
			b[i] = byte(i)
		}
		want := bytes.Clone(b)
		Bytes(b)
		if !bytes.Equal(b, want) {
			t.Fatalf("%d bytes: contents changed", n)
		}
		Bytes(b[min(1, n):]) // unaligned
		if !bytes.Equal(b, want) {
			t.Fatalf("%d bytes, unaligned: contents changed", n)
		}
	}
}

func BenchmarkFreshSlice(b *testing.B) {
	const n = 2 << 20
	b.Run("touch", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			s := make([]byte, n)
			for i := 0; i < n; i += pageSize {
				s[i] = 1
			}
		}
	})
	b.Run("prefault", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			s := make([]byte, n)
			Bytes(s)
			for i := 0; i < n; i += pageSize {
				s[i] = 1
			}
		}
	})
}

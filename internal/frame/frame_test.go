//go:build linux

package frame

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 255, ShortLimit, ShortLimit + 1, 1 << 40} {
		h := AppendHeader(nil, n)
		for i := 0; i < len(h); i++ {
			if _, _, need, err := Parse(h[:i]); err != nil || need <= i {
				t.Fatalf("n=%d prefix %d: need=%d err=%v", n, i, need, err)
			}
		}
		got, hdr, need, err := Parse(h)
		if err != nil || need != 0 || hdr != len(h) || got != int64(n) {
			t.Fatalf("n=%d: got %d hdr %d need %d err %v", n, got, hdr, need, err)
		}
	}
	if len(AppendHeader(nil, ShortLimit)) != 4 || len(AppendHeader(nil, ShortLimit+1)) != 12 {
		t.Fatal("wrong header form at the 2^31-1 boundary")
	}
}

func TestBadLength(t *testing.T) {
	for _, b := range [][]byte{
		{0x80, 0, 0, 0},
		{0xFF, 0xFF, 0xFF, 0xFE},
		{0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0},
	} {
		if _, _, _, err := Parse(b); !errors.Is(err, ErrBadLength) {
			t.Errorf("%x: err = %v, want ErrBadLength", b, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5})
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, hdr, need, err := Parse(b)
		if err != nil {
			return
		}
		if need > 0 {
			if need <= len(b) || need > MaxHeader {
				t.Fatalf("need %d with %d bytes", need, len(b))
			}
			return
		}
		if n < 0 || (hdr != 4 && hdr != 12) {
			t.Fatalf("n=%d hdr=%d", n, hdr)
		}
		if n <= ShortLimit && hdr == 4 && !bytes.Equal(AppendHeader(nil, int(n)), b[:4]) {
			t.Fatalf("re-encoding %d differs", n)
		}
	})
}

// Grow follows the bytes: the first room is at most FirstChunk, each next
// one at most twice the last, never past the message.
func TestGrow(t *testing.T) {
	for _, n := range []int64{0, 10, FirstChunk, FirstChunk + 1, 1 << 40} {
		var b []byte
		for int64(len(b)) < n {
			before := cap(b)
			b = Grow(b, n)
			if c := cap(b); c <= before || int64(c) > n || c > max(FirstChunk, 2*before) {
				t.Fatalf("n=%d: capacity %d after %d", n, c, before)
			}
			if cap(b) >= 8*FirstChunk {
				break // the doubling is shown; do not allocate a terabyte
			}
			b = b[:cap(b)]
		}
	}
}

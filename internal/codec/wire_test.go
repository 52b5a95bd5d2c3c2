//go:build linux

package codec

import (
	"bytes"
	"testing"
)

func TestAppendParse(t *testing.T) {
	for _, tc := range []struct {
		major byte
		arg   uint64
		want  []byte
	}{
		{0, 0, []byte{0x00}}, {2, 23, []byte{0x57}}, {2, 24, []byte{0x58, 24}},
		{3, 255, []byte{0x78, 0xff}}, {2, 256, []byte{0x59, 1, 0}}, {4, 65535, []byte{0x99, 0xff, 0xff}},
		{2, 65536, []byte{0x5a, 0, 1, 0, 0}}, {2, 1<<32 - 1, []byte{0x5a, 0xff, 0xff, 0xff, 0xff}},
		{2, 1 << 32, []byte{0x5b, 0, 0, 0, 1, 0, 0, 0, 0}},
	} {
		got := AppendHead(nil, tc.major, tc.arg)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("AppendHead(%d, %d) = %x, want %x", tc.major, tc.arg, got, tc.want)
		}
		major, arg, n, ok := ParseHead(append(got, 0xAA))
		if !ok || major != tc.major || arg != tc.arg || n != len(tc.want) {
			t.Errorf("ParseHead(%x) = %d, %d, %d, %v", got, major, arg, n, ok)
		}
	}
	for _, b := range [][]byte{nil, {0x58}, {0x59, 1}, {0x5a, 1, 2, 3}, {0x5b, 1}, {0x5c}, {0x5f}} {
		if _, _, _, ok := ParseHead(b); ok {
			t.Errorf("ParseHead(%x) ok", b)
		}
	}
}

//go:build linux

package codec

import (
	"bytes"
	"testing"
)

// TestWireBytes pins encodings that other processes (and older builds of
// mp in the same run) read: moving the codec must not change a byte.
func TestWireBytes(t *testing.T) {
	if want := []byte{0xd9, 0x6b, 0x6e}; !bytes.Equal(envelopePrefix, want) {
		t.Errorf("envelope prefix %x, want %x", envelopePrefix, want)
	}
	for _, c := range []struct {
		det  bool
		v    any
		want []byte
	}{
		{false, map[string]int{"b": 1}, []byte{0xa1, 0x61, 0x62, 0x01}},
		{true, map[string]int{"bb": 2, "a": 1, "c": 3}, []byte{0xa3, 0x61, 0x61, 0x01, 0x61, 0x63, 0x03, 0x62, 0x62, 0x62, 0x02}},
		{true, 1.5, []byte{0xf9, 0x3e, 0x00}},
		{false, []any{uint64(1) << 40, -3, "x", []byte{9}}, []byte{0x84, 0x1b, 0, 0, 1, 0, 0, 0, 0, 0, 0x22, 0x61, 0x78, 0x41, 0x09}},
		{false, handle{Kind: HandleConn, Index: 2, Flags: 3}, []byte{0x83, 0x01, 0x02, 0x03}},
	} {
		var got []byte
		var err error
		if c.det {
			got, err = DetMarshal(c.v)
		} else {
			got, err = Marshal(c.v)
		}
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("encode %#v (det %v) = %x, %v; want %x", c.v, c.det, got, err, c.want)
		}
	}
	b, fds, err := EncodeMessage(map[string]int{"b": 1})
	if err != nil || len(fds) != 0 || !bytes.Equal(b, []byte{0xa1, 0x61, 0x62, 0x01}) {
		t.Errorf("EncodeMessage = %x, %v, %v", b, fds, err)
	}
	if _, err := EncodeHandle(HandleConn, 0, 0); err != ErrNoSession {
		t.Errorf("EncodeHandle outside a message: %v, want ErrNoSession", err)
	}
}

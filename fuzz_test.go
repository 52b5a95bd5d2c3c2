//go:build linux

package mp

import (
	"errors"
	"io"
	"testing"

	"github.com/go-mp/mp/internal/codec"
)

// FuzzUnmarshal feeds arbitrary message bodies to the codec: it must return
// a value or an error, never panic or claim descriptors it was not given.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{1, "s", []float64{1, 2}, map[string]any{"a": []any{1, "x"}}, struct{ A, B int }{1, 2}} {
		b, _, err := codec.EncodeMessage(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xd9, 0x6b, 0x6e, 0x01, 0xd9, 0x6b, 0x6d, 0x83, 0x01, 0x00, 0x03})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a any
		codec.DecodeMessage(data, nil, &a)
		var s struct {
			A int
			B []string
			C map[string]float64
			D *Conn
		}
		codec.DecodeMessage(data, nil, &s)
		var c Conn
		if _, err := codec.DecodeMessage(data, nil, &c); err == nil {
			t.Fatal("a Conn decoded with no descriptors")
		}
	})
}

// FuzzConnRecv sends arbitrary bytes down a socket and receives from the
// other end until an error: every outcome must be a message or an error.
func FuzzConnRecv(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x80, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b, err := Pipe(true)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		go func() {
			a.t.(io.Writer).Write(data)
			a.Close()
		}()
		for i := 0; ; i++ {
			var v any
			err := b.Recv(&v)
			if err == io.EOF {
				return
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) || i > len(data) {
					return
				}
				continue // a bad body: the frame was consumed, go on
			}
		}
	})
}

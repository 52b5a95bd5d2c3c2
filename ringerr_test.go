//go:build linux

package mp_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/ringconn"
)

// The rings below the root package return the root package's errors:
// a caller that moves from a Conn to rings (a manager's link, a pool's
// worker) sees the same values, with errors.Is and errors.As.
func TestRingErrorsAreMpErrors(t *testing.T) {
	raw := make([]byte, ringconn.MemSize+64)
	off := (64 - int(uintptr(unsafe.Pointer(&raw[0]))%64)) % 64
	mem := raw[off : off+ringconn.MemSize]
	sa, sb, err := mp.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ringconn.New(sa, mem, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ringconn.New(sb, mem, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	if err := a.SendBytes(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	_, err = b.RecvBytesInto(make([]byte, 10), 0)
	var short *mp.BufferTooShortError
	if !errors.As(err, &short) || len(short.Message) != 100 || !errors.Is(err, mp.ErrBufferTooShort) {
		t.Fatalf("a message longer than the buffer: %v, want a *mp.BufferTooShortError of 100 bytes", err)
	}

	b.SetLimit(50)
	if err := a.SendBytes(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RecvBytesInto(nil, 0); !errors.Is(err, mp.ErrMessageTooLong) {
		t.Fatalf("a message over the limit: %v, want mp.ErrMessageTooLong", err)
	}

	a.Close()
	if err := a.SendBytes(nil); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("a send on a closed ring: %v, want mp.ErrClosed", err)
	}
}

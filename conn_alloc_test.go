//go:build linux

package mp_test

import (
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

// A length is the peer's claim (issue 10 point 9): announcing 1 GiB and
// sending 10 bytes must not cost the receiver the announced memory (64 MiB
// before), only about what arrived.
func TestAnnouncedLengthNotAllocated(t *testing.T) {
	a, b := pipe(t, true)
	fd, err := b.Fileno()
	if err != nil {
		t.Fatal(err)
	}
	// drained waits until the receiver has read everything sent so far.
	drained := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the receiver does not read")
			}
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	errc := make(chan error, 1)
	go func() {
		_, err := b.RecvBytes(0)
		errc <- err
	}()
	raw := mp.RawSocketForTest(a)
	raw.Write([]byte{0x40, 0, 0, 0}) // 1 GiB
	drained()
	// The payload's memory is made before its bytes are read: once these
	// are read, it is made.
	raw.Write(make([]byte, 10))
	drained()
	runtime.ReadMemStats(&after)
	a.Close()
	if err := <-errc; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("message cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 8<<20 {
		t.Fatalf("announcing 1 GiB and sending 10 bytes allocated %d MiB", grown>>20)
	}
}

//go:build linux

package ringconn

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
	"unsafe"
)

// sharedSides returns, over one memory, two holders of the first side
// (as two processes holding one mp.Pipe end would have) and the second
// side. The holders share one socket, as copies of a descriptor do.
func sharedSides(t *testing.T) (a1, a2, b *Conn, mem []byte) {
	t.Helper()
	raw := make([]byte, MemSize+64)
	off := (64 - int(uintptr(unsafe.Pointer(&raw[0]))%64)) % 64
	mem = raw[off : off+MemSize]
	sa, sb, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	if a1, err = NewShared(sa, mem, true); err == nil {
		if a2, err = NewShared(sa, mem, true); err == nil {
			b, err = NewShared(sb, mem, false)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a1.Close(); b.Close() })
	return a1, a2, b, mem
}

// Holders that take turns continue from the positions in the shared
// memory: one stream, in order, nothing lost or read twice.
func TestSharedHoldersTakeTurns(t *testing.T) {
	a1, a2, b, _ := sharedSides(t)
	var want [][]byte
	for i := range 40 {
		msg := bytes.Repeat([]byte{byte(i)}, 100+i*50)
		want = append(want, msg)
		if err := []*Conn{a1, a2}[i%3%2].SendBytes(msg); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			for _, w := range want {
				if got := recv(t, b); !bytes.Equal(got, w) {
					t.Fatalf("message of %d bytes: got %d", len(w), len(got))
				}
			}
			want = nil
		}
	}
	// The replies: received by either holder, in turn.
	for i := range 10 {
		if err := b.SendBytes([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if got := recv(t, []*Conn{a1, a2}[i%2]); len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("reply %d: %v", i, got)
		}
	}
}

// A shared side publishes a message whole: a send that does not fit
// waits, having published nothing, and its write deadline ends the wait
// with nothing sent; a message longer than the ring fails at once.
func TestSharedWholeMessages(t *testing.T) {
	a, _, b, mem := sharedSides(t)
	head := (*uint64)(unsafe.Pointer(&mem[headerSize+RingSize+offHead]))
	big := make([]byte, RingSize/2)
	if err := a.SendBytes(big); err != nil {
		t.Fatal(err)
	}
	before := *head
	a.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if err := a.SendBytes(big); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a send that does not fit, past its deadline = %v", err)
	}
	if *head != before {
		t.Fatalf("the failed send published %d bytes", *head-before)
	}
	a.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { done <- a.SendBytes(big) }()
	for range 2 {
		if got := recv(t, b); len(got) != len(big) {
			t.Fatalf("got %d bytes", len(got))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.SendBytes(make([]byte, MaxShared+1)); err == nil {
		t.Fatal("a message longer than the ring was sent")
	}
}

// Closing a holder does not mark the ring closed: the other holders
// still send, and the peer still receives.
func TestSharedCloseLeavesRingOpen(t *testing.T) {
	a1, a2, b, _ := sharedSides(t)
	a1.Close()
	if a1.out.closed.Load() != 0 {
		t.Fatal("a holder's Close marked the ring closed")
	}
	if err := a2.SendBytes([]byte("still")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b); string(got) != "still" {
		t.Fatalf("got %q", got)
	}
}

// A send on a shared side looks at the reader's tail, whose cache line
// the reader writes with each message it takes, only when the room the
// tail last seen leaves is too small for the message, as a side made by
// New does: while it is large enough, sends cost no cache miss on it. So
// a tail corrupted meanwhile fails the first send that needs room, not
// one before.
func TestSharedSendLooksAtTailForRoomOnly(t *testing.T) {
	a, _, b, _ := sharedSides(t)
	if err := a.SendBytes(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	recv(t, b)
	a.out.tail.Store(^uint64(0)) // past the head: ErrCorrupt once looked at
	if err := a.SendBytes(make([]byte, 100)); err != nil {
		t.Fatalf("a send with room enough by the tail last seen: %v", err)
	}
	if err := a.SendBytes(make([]byte, MaxShared)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a send that needs the whole ring, the tail past the head: %v, want ErrCorrupt", err)
	}
}

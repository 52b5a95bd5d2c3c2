//go:build linux

package mp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

// recvAsync receives one int on c in a goroutine and reports the error.
func recvAsync(c *mp.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		var v int
		done <- c.Recv(&v)
	}()
	return done
}

// waitErr waits, at most a bound that only proves no hang, for done.
func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the call is still blocked")
		return nil
	}
}

// TestRecvDeadlineSetWhileBlocked blocks a Recv on an empty pipe, then
// sets a read deadline already past: the blocked Recv is woken with an
// error matching os.ErrDeadlineExceeded, and once the deadline is cleared
// the Conn receives the next message.
func TestRecvDeadlineSetWhileBlocked(t *testing.T) {
	a, b := pipe(t, true)
	done := recvAsync(a)
	// Let the receiver block (a Recv that has not started yet fails at
	// once, which the assertion accepts as well).
	time.Sleep(20 * time.Millisecond)
	if err := a.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Recv after a deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	if err := a.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	b.Send(7)
	var v int
	if err := a.Recv(&v); err != nil || v != 7 {
		t.Fatalf("Recv after clearing the deadline = %d, %v", v, err)
	}
}

// TestRecvDeadlineFuture blocks a Recv whose deadline, set before, passes
// while it waits.
func TestRecvDeadlineFuture(t *testing.T) {
	a, _ := pipe(t, true)
	a.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if err := waitErr(t, recvAsync(a)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past its deadline = %v", err)
	}
}

// TestRecvDeadlinePastFailsAtOnce puts two messages in the pipe and
// reads one (so the other sits in the Conn's buffer), then sets a past
// deadline: every receive fails at once, even with a message ready, and
// after clearing it the message is there.
func TestRecvDeadlinePastFailsAtOnce(t *testing.T) {
	a, b := pipe(t, true)
	b.Send(1)
	b.Send(2)
	var v int
	if err := a.Recv(&v); err != nil || v != 1 {
		t.Fatalf("Recv = %d, %v", v, err)
	}
	a.SetReadDeadline(time.Now().Add(-time.Millisecond))
	if err := a.Recv(&v); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Recv = %v", err)
	}
	if _, err := a.RecvBytes(0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("RecvBytes = %v", err)
	}
	if _, err := a.RecvBytesInto(make([]byte, 8), 0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("RecvBytesInto = %v", err)
	}
	if ok, err := a.Poll(0); !ok || err != nil {
		t.Errorf("Poll(0) with a message buffered = %v, %v; want true", ok, err)
	}
	a.SetDeadline(time.Time{})
	if err := a.Recv(&v); err != nil || v != 2 {
		t.Fatalf("Recv after clearing = %d, %v", v, err)
	}
	// Nothing left: Poll waits up to the deadline and says it passed;
	// its own timeout ending first is no error.
	if ok, err := a.Poll(10 * time.Millisecond); ok || err != nil {
		t.Errorf("Poll timeout = %v, %v", ok, err)
	}
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if ok, err := a.Poll(-1); ok || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Poll past the deadline = %v, %v", ok, err)
	}
	if ok, err := a.Poll(time.Second); ok || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Poll with a past deadline = %v, %v", ok, err)
	}
}

// TestRecvDeadlineMidMessageKeepsIt writes a frame header and part of
// the payload into the socket by hand and lets the read deadline pass
// while RecvBytesInto waits for the rest: after the error, with the rest
// written, the next receive returns the message whole and the one after
// it is in step.
func TestRecvDeadlineMidMessageKeepsIt(t *testing.T) {
	a, b := pipe(t, true)
	const size = 200 << 10
	msg := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	fd, err := b.Fileno()
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32(nil, size)
	frame = append(frame, msg...)
	if _, err := unix.Write(fd, frame[:size/2]); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	buf := make([]byte, size)
	if _, err := a.RecvBytesInto(buf, 0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("RecvBytesInto, half the message sent = %v", err)
	}
	clear(buf) // the caller's buffer is its own after the error
	if _, err := unix.Write(fd, frame[size/2:]); err != nil {
		t.Fatal(err)
	}
	b.SendBytes([]byte("next"))
	a.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost step fails, not hangs
	if n, err := a.RecvBytesInto(buf, 0); err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("RecvBytesInto after the deadline: %d bytes, %v; want the %d-byte message whole", n, err, size)
	}
	if got, err := a.RecvBytes(0); err != nil || string(got) != "next" {
		t.Fatalf("RecvBytes = %q, %v", got, err)
	}
}

// TestSendDeadlineMidMessage sends a message larger than the socket's
// buffers to a peer that does not read, so the write deadline passes
// after its first bytes went out: the error says so, and the next send
// sends the rest first, so the peer receives that message whole, then
// the next.
func TestSendDeadlineMidMessage(t *testing.T) {
	a, b := pipe(t, true)
	msg := bytes.Repeat([]byte("0123456789abcdef"), (8<<20)/16)
	b.SetWriteDeadline(time.Now().Add(30 * time.Millisecond))
	err := b.SendBytes(msg)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "went out") {
		t.Fatalf("SendBytes to a peer not reading = %v", err)
	}
	b.SetWriteDeadline(time.Time{})
	sent := make(chan error, 1)
	go func() { sent <- b.SendBytes([]byte("next")) }()
	a.SetReadDeadline(time.Now().Add(10 * time.Second)) // a torn message fails, not hangs
	if got, err := a.RecvBytes(0); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("RecvBytes: %d bytes, %v; want the %d-byte message whole", len(got), err, len(msg))
	}
	if got, err := a.RecvBytes(0); err != nil || string(got) != "next" {
		t.Fatalf("RecvBytes = %q, %v", got, err)
	}
	if err := waitErr(t, sent); err != nil {
		t.Fatal(err)
	}
}

// TestSendDeadlineOnFullPipe fills a pipe nobody reads until Send
// blocks, then checks that a write deadline ends the blocked Send, that a
// past one fails the next Send at once, and that nothing was torn: the
// reader gets every message that Send reported sent, then the one that
// was sent late, whole.
func TestSendDeadlineOnFullPipe(t *testing.T) {
	a, b := pipe(t, true)
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	b.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	sent := 0
	var err error
	for ; sent < 10000; sent++ {
		if err = b.SendBytes(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("SendBytes on a full pipe after %d messages = %v", sent, err)
	}
	b.SetWriteDeadline(time.Now().Add(-time.Second))
	if err := b.Send(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send with a past deadline = %v", err)
	}
	// A deadline set while Send is blocked wakes it.
	b.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { done <- b.SendBytes(chunk) }()
	time.Sleep(20 * time.Millisecond)
	b.SetWriteDeadline(time.Now())
	if err := waitErr(t, done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked SendBytes after a deadline = %v", err)
	}
	b.SetWriteDeadline(time.Time{})
	go func() { done <- b.SendBytes([]byte("end")) }()
	a.SetReadDeadline(time.Now().Add(10 * time.Second)) // a torn message fails, not hangs
	n := 0
	for {
		got, err := a.RecvBytes(0)
		if err != nil {
			t.Fatalf("message %d: %v", n, err)
		}
		if string(got) == "end" {
			break
		}
		if !bytes.Equal(got, chunk) {
			t.Fatalf("message %d: %d bytes, want a whole %d-byte chunk", n, len(got), len(chunk))
		}
		n++
	}
	// Each failed send either sent nothing or went out late, whole.
	if n < sent || n > sent+2 {
		t.Fatalf("received %d chunks, %d reported sent", n, sent)
	}
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestDeadlineOnClosedConn: deadlines on a closed Conn report ErrClosed.
func TestDeadlineOnClosedConn(t *testing.T) {
	a, _ := pipe(t, true)
	a.Close()
	if err := a.SetDeadline(time.Now()); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("SetDeadline after Close = %v", err)
	}
}

//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type pair struct {
	A, B int
	Tag  string
}

func TestPipeDuplexValues(t *testing.T) {
	a, b := pipe(t, true)
	for _, c := range [][2]*mp.Conn{{a, b}, {b, a}} {
		want := pair{1, 2, "x"}
		if err := c[0].Send(want); err != nil {
			t.Fatal(err)
		}
		var got pair
		if err := c[1].Recv(&got); err != nil || got != want {
			t.Fatalf("Recv = %+v, %v", got, err)
		}
	}
	var anyv any
	a.Send(map[string]int{"k": 7})
	if err := b.Recv(&anyv); err != nil {
		t.Fatal(err)
	}
	if m, ok := anyv.(map[any]any); !ok || m["k"] != uint64(7) {
		t.Errorf("decoded into any: %#v", anyv)
	}
}

func TestPipeOneWay(t *testing.T) {
	r, w := pipe(t, false)
	if !r.Readable() || r.Writable() || w.Readable() || !w.Writable() {
		t.Fatal("wrong directions")
	}
	if err := r.Send(1); !errors.Is(err, mp.ErrNotWritable) {
		t.Errorf("Send on read end = %v", err)
	}
	if err := r.SendBytes([]byte("x")); !errors.Is(err, mp.ErrNotWritable) {
		t.Errorf("SendBytes on read end = %v", err)
	}
	var v int
	if err := w.Recv(&v); !errors.Is(err, mp.ErrNotReadable) {
		t.Errorf("Recv on write end = %v", err)
	}
	if _, err := w.RecvBytes(0); !errors.Is(err, mp.ErrNotReadable) {
		t.Errorf("RecvBytes on write end = %v", err)
	}
	if _, err := w.Poll(0); !errors.Is(err, mp.ErrNotReadable) {
		t.Errorf("Poll on write end = %v", err)
	}
	if err := w.Send(42); err != nil {
		t.Fatal(err)
	}
	if err := r.Recv(&v); err != nil || v != 42 {
		t.Fatalf("Recv = %d, %v", v, err)
	}
}

func TestEOFAfterPeerClose(t *testing.T) {
	a, b := pipe(t, true)
	a.SendBytes([]byte("last"))
	a.Close()
	if m, err := b.RecvBytes(0); err != nil || string(m) != "last" {
		t.Fatalf("RecvBytes = %q, %v", m, err)
	}
	if _, err := b.RecvBytes(0); err != io.EOF {
		t.Fatalf("RecvBytes after close = %v, want io.EOF", err)
	}
	if ok, err := b.Poll(0); !ok || err != nil {
		t.Errorf("Poll at EOF = %v, %v; want true (recv would not block)", ok, err)
	}
	if err := b.Send(1); err == nil {
		t.Error("Send to a closed peer succeeded")
	}
	if err := a.Send(1); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Send on closed Conn = %v", err)
	}
	if _, err := a.Fileno(); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Fileno on closed Conn = %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestCloseUnblocksRecv(t *testing.T) {
	a, _ := pipe(t, true)
	errc := make(chan error, 1)
	go func() {
		var v int
		errc <- a.Recv(&v)
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, mp.ErrClosed) {
			t.Errorf("Recv on Conn closed meanwhile = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Recv")
	}
}

func TestTruncatedMessage(t *testing.T) {
	a, b := pipe(t, true)
	// A header announcing 100 bytes, then only 3, then EOF.
	raw := mp.RawSocketForTest(a)
	raw.Write([]byte{0, 0, 0, 100, 'a', 'b', 'c'})
	a.Close()
	if _, err := b.RecvBytes(0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated message: %v", err)
	}
}

func TestBadHeader(t *testing.T) {
	a, b := pipe(t, true)
	mp.RawSocketForTest(a).Write([]byte{0x80, 0, 0, 0})
	if _, err := b.RecvBytes(0); err == nil || err == io.EOF {
		t.Fatalf("negative length accepted: %v", err)
	}
}

func TestHugeHeaderDoesNotAllocate(t *testing.T) {
	a, b := pipe(t, true)
	// Claims 2^62 bytes; only 10 arrive before EOF.
	mp.RawSocketForTest(a).Write([]byte{0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	a.Close()
	if _, err := b.RecvBytes(0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("huge header: %v", err)
	}
}

func TestRecvBytesLimits(t *testing.T) {
	a, b := pipe(t, true)
	a.SendBytes(make([]byte, 100))
	a.SendBytes([]byte("ok"))
	if _, err := b.RecvBytes(10); !errors.Is(err, mp.ErrMessageTooLong) {
		t.Fatalf("RecvBytes(10) of 100 bytes = %v", err)
	}
	if m, err := b.RecvBytes(10); err != nil || string(m) != "ok" {
		t.Fatalf("message after a discarded one = %q, %v", m, err)
	}
}

func TestRecvBytesInto(t *testing.T) {
	a, b := pipe(t, true)
	buf := make([]byte, 8)
	a.SendBytes([]byte("abc"))
	if n, err := b.RecvBytesInto(buf, 2); err != nil || n != 3 || string(buf[2:5]) != "abc" {
		t.Fatalf("RecvBytesInto = %d, %v, %q", n, err, buf)
	}
	long := []byte("0123456789")
	a.SendBytes(long)
	_, err := b.RecvBytesInto(buf, 0)
	var bt *mp.BufferTooShortError
	if !errors.As(err, &bt) || !errors.Is(err, mp.ErrBufferTooShort) || !bytes.Equal(bt.Message, long) {
		t.Fatalf("too-long message: %v", err)
	}
	if _, err := b.RecvBytesInto(buf, 9); err == nil {
		t.Error("offset past the buffer accepted")
	}
	if err := a.SendBytesAt(long, 2, 3); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.RecvBytes(0); string(m) != "234" {
		t.Errorf("SendBytesAt sent %q", m)
	}
	for _, bad := range [][2]int{{-1, 1}, {11, 0}, {5, 6}} {
		if err := a.SendBytesAt(long, bad[0], bad[1]); err == nil {
			t.Errorf("SendBytesAt(%v) accepted", bad)
		}
	}
}

func TestPollTimeout(t *testing.T) {
	a, b := pipe(t, true)
	if ok, err := b.Poll(0); ok || err != nil {
		t.Fatalf("Poll(0) on empty = %v, %v", ok, err)
	}
	if ok, err := b.Poll(30 * time.Millisecond); ok || err != nil {
		t.Fatalf("Poll(30ms) on empty = %v, %v", ok, err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Send("late")
	}()
	if ok, err := b.Poll(5 * time.Second); !ok || err != nil {
		t.Fatalf("Poll waiting for a message = %v, %v", ok, err)
	}
	var s string
	if err := b.Recv(&s); err != nil || s != "late" {
		t.Fatalf("Recv after Poll = %q, %v", s, err)
	}
	if fd, err := b.Fileno(); err != nil || fd < 0 {
		t.Errorf("Fileno = %d, %v", fd, err)
	}
}

func TestLargeMessages(t *testing.T) {
	a, b := pipe(t, true)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(msg) }()
	got, err := b.RecvBytes(0)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("4 MiB message: len %d, %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Large Go values too.
	vals := make([]float64, 1<<20)
	for i := range vals {
		vals[i] = float64(i) / 3
	}
	go func() { errc <- a.Send(vals) }()
	var back []float64
	if err := b.Recv(&back); err != nil || len(back) != len(vals) || back[12345] != vals[12345] {
		t.Fatalf("1 M floats: %d, %v", len(back), err)
	}
	<-errc
}

// Conns travel inside values over another Conn.
func TestSendConnOverConn(t *testing.T) {
	a, b := pipe(t, true)
	x, y := pipe(t, true)
	if err := a.Send(struct{ C *mp.Conn }{x}); err != nil {
		t.Fatal(err)
	}
	x.Close() // the copy in flight keeps the socket open
	var got struct{ C *mp.Conn }
	if err := b.Recv(&got); err != nil {
		t.Fatal(err)
	}
	defer got.C.Close()
	got.C.Send("through the passed conn")
	var s string
	if err := y.Recv(&s); err != nil || s != "through the passed conn" {
		t.Fatalf("Recv = %q, %v", s, err)
	}
	// A Conn cannot be encoded outside mp's sending path.
	if _, err := mp.EncodeForTest(y); err == nil {
		t.Error("Conn marshalled with no session")
	}
}

var echo = mp.RegisterProc("test.echo", func(c *mp.Conn) error {
	defer c.Close()
	for {
		m, err := c.RecvBytes(0)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.SendBytes(m); err != nil {
			return err
		}
	}
})

func TestConnPassedToChild(t *testing.T) {
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(echo, b))
	b.Close()
	for _, m := range []string{"one", "two", string(make([]byte, 1<<20))} {
		if err := a.SendBytes([]byte(m)); err != nil {
			t.Fatal(err)
		}
		got, err := a.RecvBytes(0)
		if err != nil || string(got) != m {
			t.Fatalf("echo of %d bytes: %d, %v", len(m), len(got), err)
		}
	}
	a.Close()
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestRecvEOFWhenChildKilled(t *testing.T) {
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(echo, b))
	b.Close()
	a.SendBytes([]byte("ping"))
	if _, err := a.RecvBytes(0); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if _, err := a.RecvBytes(0); err != io.EOF {
		t.Fatalf("Recv from a killed child = %v, want io.EOF", err)
	}
}

func TestWait(t *testing.T) {
	a, b := pipe(t, true)
	c, d := pipe(t, true)
	p := start(t, mp.NewProcess(fail, "sleep"))
	ready, err := mp.Wait[mp.Waitable](ctxTimeout(t, 30*time.Millisecond), b, d, p)
	if !errors.Is(err, context.DeadlineExceeded) || len(ready) != 0 {
		t.Fatalf("Wait with nothing ready = %v, %v", ready, err)
	}
	c.Send(1)
	ready, err = mp.Wait[mp.Waitable](ctxTimeout(t, 5*time.Second), b, d, p)
	if err != nil || len(ready) != 1 || ready[0] != d {
		t.Fatalf("Wait = %v, %v; want [d]", ready, err)
	}
	p.Kill()
	ready, err = mp.Wait[mp.Waitable](ctxTimeout(t, 5*time.Second), b, p)
	if err != nil || len(ready) != 1 || ready[0] != p {
		t.Fatalf("Wait for killed process = %v, %v", ready, err)
	}
	// Cancellation wakes Wait.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := mp.Wait(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait = %v", err)
	}
	// Buffered data counts as ready.
	a.Send(1)
	a.Send(2)
	var v int
	b.Recv(&v)
	if ok, _ := b.Poll(time.Second); !ok {
		t.Fatal("second message not pollable")
	}
	ready, err = mp.Wait[mp.Waitable](context.Background(), b)
	if err != nil || len(ready) != 1 {
		t.Fatalf("Wait with buffered message = %v, %v", ready, err)
	}
	if fd, err := p.Sentinel(); err != nil || fd < 0 {
		t.Errorf("Sentinel = %d, %v", fd, err)
	}
}

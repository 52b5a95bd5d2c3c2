//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/ringconn"
)

// patterned returns an n-byte message that says who sent it: seq in its
// first bytes, then bytes that depend on seq and their place, so that a
// torn, shifted or mixed message does not pass checkPatterned.
func patterned(seq, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seq*31 + i*7)
	}
	if n >= 4 {
		b[0], b[1], b[2], b[3] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	}
	return b
}

func checkPatterned(b []byte, seq, n int) error {
	if len(b) != n || !bytes.Equal(b, patterned(seq, n)) {
		return fmt.Errorf("message %d: %d bytes, not the %d sent", seq, len(b), n)
	}
	return nil
}

// ringSizes are message sizes through the ring and, beyond
// PipeMaxRing, over the socket behind a marker; an empty message goes
// over the socket too.
var ringSizes = []int{10, 1000, mp.PipeMaxRing, mp.PipeMaxRing + 1, 300 << 10, 0, 5}

// ringInfo is the reply of ringEcho's "info" request.
type ringInfo struct {
	HasRing            bool
	Sent, Received     uint64
	SendMode, RecvMode uint32
}

// ringEcho echoes bytes messages until EOF; "info" is answered with
// what its end's rings carried.
var ringEcho = mp.RegisterProc("test.ringEcho", func(c *mp.Conn) error {
	defer c.Close()
	for {
		m, err := c.RecvBytes(0)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if string(m) == "info" {
			i, ok := mp.PipeRingForTest(c)
			if err := c.Send(ringInfo{ok, i.Sent, i.Received, i.SendMode, i.RecvMode}); err != nil {
				return err
			}
			continue
		}
		if string(m) == "sleep" {
			// Late: the other end's receive sleeps, on the socket's
			// doorbell after a futex's 10 ms (see
			// TestPipeRingRecvAllocsSleeping).
			time.Sleep(15 * time.Millisecond)
		}
		if err := c.SendBytes(m); err != nil {
			return err
		}
	}
})

// A Pipe end passed to a child carries messages both ways through the
// rings: both ends report ring traffic and both directions in ring mode,
// so the test fails if the fast path is silently not taken.
func TestPipeRingRoundTrips(t *testing.T) {
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(ringEcho, b))
	b.Close()
	for round := range 3 {
		for i, n := range ringSizes {
			seq := round*100 + i
			if err := a.SendBytes(patterned(seq, n)); err != nil {
				t.Fatal(err)
			}
			got, err := a.RecvBytes(0)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkPatterned(got, seq, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Values, and RecvBytesInto through the ring.
	for i := range 100 {
		if err := a.SendBytes(patterned(i, 100)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 200)
		n, err := a.RecvBytesInto(buf, 50)
		if err != nil || checkPatterned(buf[50:50+n], i, 100) != nil {
			t.Fatalf("RecvBytesInto = %d, %v", n, err)
		}
	}
	// Limits: a message over the limit is skipped, the next one is whole,
	// through the ring and over the socket.
	for _, n := range []int{1000, mp.PipeMaxRing + 1} {
		a.SendBytes(patterned(1, n))
		a.SendBytes(patterned(2, 50))
		if _, err := a.RecvBytes(100); !errors.Is(err, mp.ErrMessageTooLong) {
			t.Fatalf("RecvBytes(100) of %d bytes = %v", n, err)
		}
		a.SetLimit(100)
		if got, err := a.RecvBytes(0); err != nil || checkPatterned(got, 2, 50) != nil {
			t.Fatalf("the message after: %d bytes, %v", len(got), err)
		}
		a.SendBytes(patterned(3, 101))
		if _, err := a.RecvBytes(0); !errors.Is(err, mp.ErrMessageTooLong) {
			t.Fatalf("a message over SetLimit = %v", err)
		}
		a.SetLimit(0)
	}
	info, ok := mp.PipeRingForTest(a)
	if !ok || info.Sent < 100*100 || info.Received < 100*100 || info.SendMode != 1 || info.RecvMode != 1 {
		t.Fatalf("parent's end: rings %v, %+v; want both ways through them", ok, info)
	}
	if err := a.SendBytes([]byte("info")); err != nil {
		t.Fatal(err)
	}
	var ci ringInfo
	if err := a.Recv(&ci); err != nil {
		t.Fatal(err)
	}
	if !ci.HasRing || ci.Sent < 100*100 || ci.Received < 100*100 || ci.SendMode != 1 || ci.RecvMode != 1 {
		t.Fatalf("child's end: %+v; want both ways through the rings", ci)
	}
	a.Close()
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// A Pipe whose ends stay in one process has no rings.
func TestPipeInOneProcessHasNoRings(t *testing.T) {
	a, b := pipe(t, true)
	a.Send("x")
	var s string
	if err := b.Recv(&s); err != nil || s != "x" {
		t.Fatal(s, err)
	}
	if _, ok := mp.PipeRingForTest(a); ok {
		t.Fatal("a Pipe that never left the process got rings")
	}
}

type floodArgs struct {
	C    *mp.Conn
	Size int
	N    int
}

// ringFlood sends N patterned messages of Size bytes, then waits to be
// killed.
var ringFlood = mp.RegisterProc("test.ringFlood", func(a floodArgs) error {
	for i := range a.N {
		if err := a.C.SendBytes(patterned(i, a.Size)); err != nil {
			return err
		}
	}
	select {}
})

// recvWithin runs recv, failing the test if it does not return within d:
// a receive from a dead peer must end.
func recvWithin(t *testing.T, d time.Duration, recv func() ([]byte, error)) ([]byte, error) {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		b, err := recv()
		done <- res{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(d):
		t.Fatalf("a receive did not end in %v", d)
		return nil, nil
	}
}

// A child killed while its message is going over the socket (stopped
// there on purpose: the parent sees the marker out and its frame not
// finished, and the socket full): the parent gets io.ErrUnexpectedEOF,
// then io.EOF, not a hang.
func TestPipeRingPeerKilledMidMessage(t *testing.T) {
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(ringFlood, floodArgs{C: b, Size: 16 << 20, N: 1}))
	b.Close()
	waitFor(t, func() bool {
		i, ok := mp.PipeRingForTest(a)
		return ok && i.PeerSendState == mp.PipeMarked && i.PeerSendLock != 0
	})
	syscall.Kill(p.Pid(), syscall.SIGSTOP)
	p.Kill()
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err == nil {
		t.Fatal("the killed child's Join succeeded")
	}
	_, err := recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Recv of a message whose sender died in it = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) }); err != io.EOF {
		t.Fatalf("next Recv = %v, want io.EOF", err)
	}
}

// A child killed while it waits for room in a full ring (stopped there
// on purpose) left only whole messages: the parent receives each of them
// intact, then io.EOF.
func TestPipeRingPeerKilledWaitingForRoom(t *testing.T) {
	a, b := pipe(t, true)
	const size = 1000
	p := start(t, mp.NewProcess(ringFlood, floodArgs{C: b, Size: size, N: 1000}))
	b.Close()
	waitFor(t, func() bool {
		i, ok := mp.PipeRingForTest(a)
		return ok && i.PeerSendLock != 0 && i.InHead.Load()-i.InTail.Load() > mp.PipeRingSize-(size+8)
	})
	syscall.Kill(p.Pid(), syscall.SIGSTOP)
	p.Kill()
	p.Join(ctxTimeout(t, 10*time.Second))
	n := 0
	for ; ; n++ {
		got, err := recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) })
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("message %d: %v", n, err)
		}
		if err := checkPatterned(got, n, size); err != nil {
			t.Fatal(err)
		}
	}
	if n < mp.PipeRingSize/(size+8) {
		t.Fatalf("%d messages received, the ring held more", n)
	}
}

type seqMsg struct {
	ID, Seq int
	Data    []byte
}

type senderArgs struct {
	C     *mp.Conn
	ID, N int
}

// ringSender sends N seqMsgs of the sizes of ringSizes in turn.
var ringSender = mp.RegisterProc("test.ringSender", func(a senderArgs) error {
	defer a.C.Close()
	for i := range a.N {
		if err := a.C.Send(seqMsg{a.ID, i, patterned(a.ID*1000+i, ringSizes[i%len(ringSizes)])}); err != nil {
			return err
		}
	}
	return nil
})

type receiverArgs struct {
	C, Out *mp.Conn
}

// ringReceiver receives seqMsgs until one with Seq -1, and reports the
// Seqs it got over Out.
var ringReceiver = mp.RegisterProc("test.ringReceiver", func(a receiverArgs) error {
	defer a.C.Close()
	defer a.Out.Close()
	var got []int
	for {
		var m seqMsg
		if err := a.C.Recv(&m); err != nil {
			return err
		}
		if m.Seq < 0 {
			return a.Out.Send(got)
		}
		if err := checkPatterned(m.Data, m.ID*1000+m.Seq, ringSizes[m.Seq%len(ringSizes)]); err != nil {
			return err
		}
		got = append(got, m.Seq)
	}
})

// One end held by several processes at once: two children and the
// parent send on copies of one end at the same time, through the rings
// and the socket, with no lock of their own; every message arrives once,
// whole, each sender's in order. Then two children receive on copies of
// one end: each message goes to one of them, each child's in order.
func TestPipeRingCopiesInTwoProcesses(t *testing.T) {
	const n = 60
	a, b := pipe(t, true)
	p1 := start(t, mp.NewProcess(ringSender, senderArgs{C: b, ID: 1, N: n}))
	p2 := start(t, mp.NewProcess(ringSender, senderArgs{C: b, ID: 2, N: n}))
	// The parent keeps its copy and sends on it too.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if err := b.Send(seqMsg{0, i, patterned(i, ringSizes[i%len(ringSizes)])}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	next := map[int]int{}
	for range 3 * n {
		var m seqMsg
		if _, err := recvWithin(t, 30*time.Second, func() ([]byte, error) { return nil, a.Recv(&m) }); err != nil {
			t.Fatal(err)
		}
		if m.Seq != next[m.ID] {
			t.Fatalf("sender %d: message %d after %d", m.ID, m.Seq, next[m.ID]-1)
		}
		next[m.ID]++
		if err := checkPatterned(m.Data, m.ID*1000+m.Seq, ringSizes[m.Seq%len(ringSizes)]); err != nil {
			t.Fatalf("sender %d: %v", m.ID, err)
		}
	}
	wg.Wait()
	for _, p := range []*mp.Process{p1, p2} {
		if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if i, ok := mp.PipeRingForTest(a); !ok || i.RecvMode != 1 {
		t.Fatalf("receiving end: %v %+v, want it on the rings", ok, i)
	}

	// Two receivers on copies of one end.
	c, d := pipe(t, true)
	r1, o1 := pipe(t, false)
	r2, o2 := pipe(t, false)
	q1 := start(t, mp.NewProcess(ringReceiver, receiverArgs{C: d, Out: o1}))
	q2 := start(t, mp.NewProcess(ringReceiver, receiverArgs{C: d, Out: o2}))
	d.Close()
	o1.Close()
	o2.Close()
	for i := range 2 * n {
		if err := c.Send(seqMsg{0, i, patterned(i, ringSizes[i%len(ringSizes)])}); err != nil {
			t.Fatal(err)
		}
	}
	c.Send(seqMsg{Seq: -1})
	c.Send(seqMsg{Seq: -1})
	var all []int
	for _, r := range []*mp.Conn{r1, r2} {
		var got []int
		if _, err := recvWithin(t, 30*time.Second, func() ([]byte, error) { return nil, r.Recv(&got) }); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSorted(got) {
			t.Fatalf("a receiver got %v, out of order", got)
		}
		all = append(all, got...)
	}
	slices.Sort(all)
	for i, s := range all {
		if s != i || len(all) != 2*n {
			t.Fatalf("the receivers got %v together, want each of 0..%d once", all, 2*n-1)
		}
	}
	for _, p := range []*mp.Process{q1, q2} {
		if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if i, ok := mp.PipeRingForTest(c); !ok || i.SendMode != 1 || i.Sent == 0 {
		t.Fatalf("sending end: %v %+v, want it on the rings", ok, i)
	}
}

// Poll, Wait and the read deadline see a message waiting in the ring.
func TestPipeRingPollWaitDeadlines(t *testing.T) {
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(ringEcho, b))
	b.Close()
	// Nothing waiting.
	if ok, err := a.Poll(20 * time.Millisecond); ok || err != nil {
		t.Fatalf("Poll with nothing sent = %v, %v", ok, err)
	}
	if ready, err := mp.Wait(ctxTimeout(t, 20*time.Millisecond), a); len(ready) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with nothing sent = %v, %v", ready, err)
	}
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := recvWithin(t, 3*time.Second, func() ([]byte, error) { return a.RecvBytes(0) }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past the deadline = %v", err)
	}
	a.SetReadDeadline(time.Time{})
	// A deadline set while a receive waits (on the ring's futex, or the
	// socket) ends it.
	go func() {
		time.Sleep(30 * time.Millisecond)
		a.SetReadDeadline(time.Now())
	}()
	if _, err := recvWithin(t, 3*time.Second, func() ([]byte, error) { return a.RecvBytes(0) }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv whose deadline was set while it waited = %v", err)
	}
	a.SetReadDeadline(time.Time{})

	for round := range 3 {
		msg := patterned(round, 100)
		if err := a.SendBytes(msg); err != nil {
			t.Fatal(err)
		}
		// The echo waits in the ring, and nobody has asked for a doorbell.
		waitFor(t, func() bool { i, _ := mp.PipeRingForTest(a); return i.Ready })
		switch round {
		case 0:
			if ok, err := a.Poll(0); !ok || err != nil {
				t.Fatalf("Poll(0) with a message in the ring = %v, %v", ok, err)
			}
		case 1:
			done, cancel := context.WithCancel(context.Background())
			cancel()
			if ready, err := mp.Wait(done, a); len(ready) != 1 || err != nil {
				t.Fatalf("Wait with a message in the ring = %v, %v", ready, err)
			}
		case 2:
			a.SetReadDeadline(time.Now().Add(-time.Second))
			if _, err := a.RecvBytes(0); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Recv past the deadline with a message waiting = %v", err)
			}
			a.SetReadDeadline(time.Time{})
		}
		got, err := a.RecvBytes(0)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: %d bytes, %v", round, len(got), err)
		}
	}
	// Wait and Poll that wait, woken by a message that comes later.
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.SendBytes([]byte("later"))
	}()
	if ready, err := mp.Wait(ctxTimeout(t, 10*time.Second), a); len(ready) != 1 || err != nil {
		t.Fatalf("Wait for a message that comes = %v, %v", ready, err)
	}
	if got, err := a.RecvBytes(0); err != nil || string(got) != "later" {
		t.Fatal(string(got), err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.SendBytes([]byte("later2"))
	}()
	if ok, err := a.Poll(10 * time.Second); !ok || err != nil {
		t.Fatalf("Poll for a message that comes = %v, %v", ok, err)
	}
	if got, err := a.RecvBytes(0); err != nil || string(got) != "later2" {
		t.Fatal(string(got), err)
	}
	a.Close()
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

type sinkArgs struct {
	C, Report *mp.Conn
}

// ringSink waits for a message on Report, then receives patterned
// messages from C until EOF and reports how many, all checked.
var ringSink = mp.RegisterProc("test.ringSink", func(a sinkArgs) error {
	defer a.C.Close()
	defer a.Report.Close()
	var size int
	if err := a.Report.Recv(&size); err != nil {
		return err
	}
	n := 0
	for ; ; n++ {
		m, err := a.C.RecvBytes(0)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := checkPatterned(m, n, size); err != nil {
			return err
		}
	}
	return a.Report.Send(n)
})

// A write deadline ends a send waiting for room in a full ring, having
// sent nothing: the receiver gets every message whole, and none twice.
func TestPipeRingWriteDeadline(t *testing.T) {
	a, b := pipe(t, true)
	rep, repChild := pipe(t, true)
	p := start(t, mp.NewProcess(ringSink, sinkArgs{C: b, Report: repChild}))
	b.Close()
	repChild.Close()
	const size = 1000
	sent := 0
	a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		err := a.SendBytes(patterned(sent, size))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if i, _ := mp.PipeRingForTest(a); i.SendMode != 1 {
		t.Fatal("the sends did not go through the ring")
	}
	a.SetWriteDeadline(time.Time{})
	rep.Send(size) // the child starts reading
	// The send that failed, again.
	if err := a.SendBytes(patterned(sent, size)); err != nil {
		t.Fatal(err)
	}
	sent++
	a.Close()
	var got int
	if err := rep.Recv(&got); err != nil || got != sent {
		t.Fatalf("the child received %d messages, %v; %d were sent", got, err, sent)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

type handleMsg struct {
	Seq  int
	Back *mp.Conn
	Lock *mp.Lock
	Data []byte
}

// ringHandles receives handleMsgs until Seq -1 and answers each on C
// with its Seq; a message with a Conn is answered over that Conn too, a
// message with a Lock after taking and giving it back.
var ringHandles = mp.RegisterProc("test.ringHandles", func(c *mp.Conn) error {
	defer c.Close()
	for {
		var m handleMsg
		if err := c.Recv(&m); err != nil {
			return err
		}
		if m.Seq < 0 {
			return nil
		}
		if err := checkPatterned(m.Data, m.Seq, len(m.Data)); err != nil {
			return err
		}
		if m.Back != nil {
			if err := m.Back.Send(m.Seq); err != nil {
				return err
			}
			m.Back.Close()
		}
		if m.Lock != nil {
			if err := m.Lock.Acquire(context.Background()); err != nil {
				return err
			}
			m.Lock.Release()

		}
		if err := c.Send(m.Seq); err != nil {
			return err
		}
	}
})

// Messages that carry handles (over the socket) between plain ones
// (through the ring) arrive in the order sent, the handles working.
func TestPipeRingHandlesKeepOrder(t *testing.T) {
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(ringHandles, b))
	b.Close()
	lock, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}

	const n = 40
	var backs []*mp.Conn
	for i := range n {
		m := handleMsg{Seq: i, Data: patterned(i, []int{3, 100, 2000}[i%3])}
		switch i % 4 {
		case 1:
			r, w := pipe(t, false)
			m.Back = w
			backs = append(backs, r)
		case 2:
			m.Lock = lock
		}
		// Sent without waiting for the answers: the ring and the socket
		// both hold messages at once.
		if err := a.Send(m); err != nil {
			t.Fatal(err)
		}
		if m.Back != nil {
			m.Back.Close()
		}
	}
	a.Send(handleMsg{Seq: -1})
	for i := range n {
		var s int
		if err := a.Recv(&s); err != nil || s != i {
			t.Fatalf("answer %d = %d, %v", i, s, err)
		}
	}
	for k, r := range backs {
		var s int
		if err := r.Recv(&s); err != nil || s != 4*k+1 {
			t.Fatalf("over the Conn sent in message %d: %d, %v", 4*k+1, s, err)
		}
	}
	if i, _ := mp.PipeRingForTest(a); i.Sent == 0 || i.Received == 0 {
		t.Fatalf("no ring traffic: %+v", i)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

type corruptArgs struct {
	C    *mp.Conn
	What string
}

// ringCorrupt plays a peer that writes garbage into the shared memory
// of its Pipe end once the parent has said go.
var ringCorrupt = mp.RegisterProc("test.ringCorrupt", func(a corruptArgs) error {
	if err := a.C.SendBytes([]byte("hello")); err != nil {
		return err
	}
	if _, err := a.C.RecvBytes(0); err != nil {
		return err
	}
	i, _ := mp.PipeRingForTest(a.C)
	switch a.What {
	case "head":
		i.OutHead.Store(i.OutHead.Load() + 3*mp.PipeRingSize)
	case "tail":
		i.InTail.Store(i.InHead.Load() + 12345)
	case "state":
		mp.PipePeerRecvStateForTest(a.C).Store(77)
	}
	if err := a.C.SendBytes([]byte("done")); err != nil && a.What != "head" {
		return err
	}
	select {}
})

// A peer that writes garbage into the ring memory gets the other side a
// clear error, never a crash or a hang.
func TestPipeRingCorruptMemory(t *testing.T) {
	for _, what := range []string{"head", "tail", "state"} {
		t.Run(what, func(t *testing.T) {
			a, b := pipe(t, true)
			start(t, mp.NewProcess(ringCorrupt, corruptArgs{C: b, What: what}))
			b.Close()
			if got, err := a.RecvBytes(0); err != nil || string(got) != "hello" {
				t.Fatal(string(got), err)
			}
			a.SendBytes([]byte("go"))
			var err error
			switch what {
			case "head":
				waitFor(t, func() bool { i, _ := mp.PipeRingForTest(a); return i.InHead.Load()-i.InTail.Load() > mp.PipeRingSize })
				_, err = recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) })
				if !errors.Is(err, ringconn.ErrCorrupt) {
					t.Fatalf("Recv over a ring with a garbage head = %v, want ringconn.ErrCorrupt", err)
				}
			case "tail":
				if got, err := a.RecvBytes(0); err != nil || string(got) != "done" {
					t.Fatal(string(got), err)
				}
				// A send looks at the reader's tail when the room the
				// tail last seen leaves is too small: a message as long
				// as the ring needs all of it.
				if err = a.SendBytes(make([]byte, ringconn.MaxShared)); !errors.Is(err, ringconn.ErrCorrupt) {
					t.Fatalf("Send over a ring with a garbage tail = %v, want ringconn.ErrCorrupt", err)
				}
			case "state":
				waitFor(t, func() bool { i, _ := mp.PipeRingForTest(a); return i.Ready })
				_, err = recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) })
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("Recv with a garbage state = %v, want an error matching io.ErrUnexpectedEOF", err)
				}
			}
		})
	}
}

type stuckArgs struct {
	C   *mp.Conn
	Sig *mp.Conn
}

// ringSwitchStuck sends on C, stopping for good once its send has sent
// frameSwitch and before it records it (it says so on Sig).
var ringSwitchStuck = mp.RegisterProc("test.ringSwitchStuck", func(a stuckArgs) error {
	inside := false
	mp.SetPipeSwitchHookForTest(func() {
		if inside {
			return // Sig's own switch
		}
		inside = true
		a.Sig.SendBytes([]byte("in"))
		select {}
	})
	return a.C.SendBytes([]byte("never"))
})

// ringMarkerStuck receives on C, stopping for good once its receive has
// taken a marker and before the ring's tail moves past it.
var ringMarkerStuck = mp.RegisterProc("test.ringMarkerStuck", func(a stuckArgs) error {
	mp.SetPipeMarkerHookForTest(func() {
		a.Sig.SendBytes([]byte("in"))
		select {}
	})
	_, err := a.C.RecvBytes(0)
	return err
})

// A sender killed in the middle of moving its direction onto the ring
// (stopped there on purpose: frameSwitch sent, not recorded): the
// parent's copy of the same end sends next, and the receiver gets its
// messages, in order, then io.EOF once both copies are gone.
func TestPipeRingSenderKilledMidSwitch(t *testing.T) {
	a, b := pipe(t, true)
	sig, sigChild := pipe(t, false)
	p := start(t, mp.NewProcess(ringSwitchStuck, stuckArgs{C: b, Sig: sigChild}))
	sigChild.Close()
	if m, err := sig.RecvBytes(0); err != nil || string(m) != "in" {
		t.Fatal(string(m), err)
	}
	syscall.Kill(p.Pid(), syscall.SIGSTOP)
	p.Kill()
	p.Join(ctxTimeout(t, 10*time.Second))
	for i := range 3 {
		if err := b.SendBytes(patterned(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	for i := range 3 {
		got, err := recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) })
		if err != nil || checkPatterned(got, i, 100) != nil {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
	}
	if _, err := recvWithin(t, 10*time.Second, func() ([]byte, error) { return a.RecvBytes(0) }); err != io.EOF {
		t.Fatalf("after the messages: %v, want io.EOF", err)
	}
	if i, _ := mp.PipeRingForTest(a); i.RecvMode != 1 || i.Received == 0 {
		t.Fatalf("the messages did not come through the ring: %+v", i)
	}
}

// A receiver killed just after taking a marker out of the ring (stopped
// there on purpose, before the ring's tail moved past it): the parent's
// copy of the same end receives next and gets the announced message from
// the socket once, then the ring's messages, in order.
func TestPipeRingReceiverKilledAtMarker(t *testing.T) {
	a, b := pipe(t, true)
	sig, sigChild := pipe(t, false)
	p := start(t, mp.NewProcess(ringMarkerStuck, stuckArgs{C: b, Sig: sigChild}))
	sigChild.Close()
	sizes := []int{mp.PipeMaxRing + 1000, 100, 0, 200}
	for i, n := range sizes {
		if err := a.SendBytes(patterned(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := sig.RecvBytes(0); err != nil || string(m) != "in" {
		t.Fatal(string(m), err)
	}
	if i, _ := mp.PipeRingForTest(b); i.RecvState != mp.PipeMarked {
		t.Fatalf("the child stopped with the receiving state %d, not at a marker", i.RecvState)
	}
	syscall.Kill(p.Pid(), syscall.SIGSTOP)
	p.Kill()
	p.Join(ctxTimeout(t, 10*time.Second))
	for i, n := range sizes {
		got, err := recvWithin(t, 10*time.Second, func() ([]byte, error) { return b.RecvBytes(0) })
		if err != nil || checkPatterned(got, i, n) != nil {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
	}
	if ok, err := b.Poll(0); ok || err != nil {
		t.Fatalf("Poll after every message = %v, %v", ok, err)
	}
}

// BenchmarkPipeRingRTT measures a round trip of a small message through
// the rings to a child that echoes it (the path of mp bench pipe_rtt,
// without its codec).
func BenchmarkPipeRingRTT(b *testing.B) {
	b.Run("bytes", func(b *testing.B) { benchPipeRingRTT(b, false) })
	b.Run("value", func(b *testing.B) { benchPipeRingRTT(b, true) })
}

// benchPipeRingRTT is BenchmarkPipeRingRTT with messages of bytes, or
// values through the codec.
func benchPipeRingRTT(b *testing.B, values bool) {
	x, y, err := mp.Pipe(true)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	p := mp.NewProcess(ringEcho, y)
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	y.Close()
	msg := []byte("hello, a small message")
	buf := make([]byte, 64)
	type small struct {
		ID      int
		Payload string
	}
	v := small{1, "hello"}
	b.ResetTimer()
	for range b.N {
		if values {
			var back small
			if err := x.Send(&v); err != nil {
				b.Fatal(err)
			}
			if err := x.Recv(&back); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err := x.SendBytes(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := x.RecvBytesInto(buf, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	x.Close()
	if err := p.Join(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// A value received through the rings keeps its bytes when the next
// message arrives: Recv decodes in the buffer that ring messages come
// through, which the next receive overwrites, so everything the value
// holds must be a copy.
func TestPipeRingRecvKeepsValues(t *testing.T) {
	a, b := pipe(t, true)
	start(t, mp.NewProcess(ringEcho, b))
	b.Close()
	type held struct {
		Bytes []byte
		Text  string
		Any   any
		Raw   cbor.RawMessage
	}
	var got []held
	for i := range 20 {
		v := held{patterned(i, 40), fmt.Sprintf("text %d of a message", i), patterned(i, 20), cbor.RawMessage{0x43, byte(i), 2, 3}}
		if err := a.Send(&v); err != nil {
			t.Fatal(err)
		}
		var back held
		if err := a.Recv(&back); err != nil {
			t.Fatal(err)
		}
		got = append(got, back)
	}
	for i, v := range got {
		anyBytes, _ := v.Any.([]byte)
		if checkPatterned(v.Bytes, i, 40) != nil || v.Text != fmt.Sprintf("text %d of a message", i) ||
			checkPatterned(anyBytes, i, 20) != nil || !bytes.Equal(v.Raw, []byte{0x43, byte(i), 2, 3}) {
			t.Fatalf("value %d changed after later receives: %+v", i, v)
		}
	}
}

// A small message through the rings allocates nothing in the receiving
// process: not a copy of the message, not the target of errors.As.
func TestPipeRingRecvAllocs(t *testing.T) {
	// AllocsPerRun counts the whole process's allocations: a goroutine
	// of an earlier test still ending (CI runs this after a 2 GiB
	// message) can add one now and then. An allocation of the round trip
	// shows in every try; keep the fewest of five.
	if n := ringRoundTripAllocs(t, "a small message", 5, 200); n != 0 {
		t.Fatalf("%v allocations per round trip through the rings, want 0", n)
	}
}

// ringRoundTripAllocs returns the fewest allocations per round trip of msg
// through the rings to ringEcho and back, in tries of runs each.
func ringRoundTripAllocs(t *testing.T, msg string, tries, runs int) float64 {
	t.Helper()
	if mp.RaceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	a, b := pipe(t, true)
	start(t, mp.NewProcess(ringEcho, b))
	b.Close()
	m := []byte(msg)
	buf := make([]byte, 64)
	roundTrip := func() {
		if err := a.SendBytes(m); err != nil {
			t.Fatal(err)
		}
		if n, err := a.RecvBytesInto(buf, 0); err != nil || n != len(m) {
			t.Fatalf("RecvBytesInto = %d, %v", n, err)
		}
	}
	roundTrip() // the rings made, the scratch buffer too
	least := math.Inf(1)
	for range tries {
		least = min(least, testing.AllocsPerRun(runs, roundTrip))
	}
	return least
}

// TestPipeRingRecvAllocsSleeping: a receive that sleeps until its
// message comes (the peer answers 15 ms late: the receive gives up
// polling, sleeps on a futex for 10 ms, then on the socket's doorbell)
// allocates nothing either. Its
// reads of the doorbell allocated 2 objects a round trip: closures over
// their locals, and the address that unix.Recvfrom returns.
func TestPipeRingRecvAllocsSleeping(t *testing.T) {
	if n := ringRoundTripAllocs(t, "sleep", 3, 20); n != 0 {
		t.Fatalf("%v allocations per round trip through the rings, want 0", n)
	}
}

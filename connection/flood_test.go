//go:build linux

package connection_test

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/auth"
)

// silentPeers is how many connections the flood tests open and keep open
// without saying a word.
const silentPeers = 1000

// enoughFiles raises the soft limit on open files for the test if the
// flood needs it (both ends of each connection are in this process), and
// restores it afterwards.
func enoughFiles(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("needs %d open files, the hard limit is %d", need, lim.Max)
	}
	old := lim
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// flood opens n TCP connections to addr that never speak, closed at the
// end of the test.
func flood(t *testing.T, addr string, n int) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("silent connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
}

// evictingListener starts a TCP Listener, closed at the end of the test,
// that counts the connections it drops to make room.
func evictingListener(t *testing.T) (*connection.Listener, *atomic.Int64) {
	t.Helper()
	evicted := new(atomic.Int64)
	lc := connection.ListenConfig{OnHandshakeError: func(_ net.Addr, err error) {
		if errors.Is(err, connection.ErrHandshakeEvicted) {
			evicted.Add(1)
		}
	}}
	l, err := lc.Listen("tcp", "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, evicted
}

// TestSilentPeersDoNotDelay: with 1000 silent connections open (and kept
// open), a good client still connects, authenticates and gets a reply
// at once, instead of waiting for handshake slots to time out.
func TestSilentPeersDoNotDelay(t *testing.T) {
	enoughFiles(t, 3*silentPeers)
	l, evicted := evictingListener(t)
	flood(t, l.Addr().String(), silentPeers)

	acc := acceptOne(t, l)
	start := time.Now()
	c, err := connection.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), testKey)
	if err != nil {
		t.Fatalf("good client after %v: %v", time.Since(start), err)
	}
	defer c.Close()
	exchange(t, c, (<-acc).conn(t))
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("good client served after %v behind %d silent peers", d, silentPeers)
	}
	t.Logf("good client served in %v behind %d silent peers (%d of them dropped)", time.Since(start), silentPeers, evicted.Load())
}

// pausingPeer is a client's side of the handshake that stops, once it has
// read the listener's answer to its own challenge (so the listener has
// checked its answer before), until resume is closed.
type pausingPeer struct {
	auth.Stream
	recvs  int
	paused chan struct{}
	resume chan struct{}
}

func (p *pausingPeer) RecvBytes(max int) ([]byte, error) {
	b, err := p.Stream.RecvBytes(max)
	if p.recvs++; p.recvs == 3 {
		close(p.paused)
		<-p.resume
	}
	return b, err
}

// TestSlowPeerWithKeyNotDropped: a client that proved the key but is slow
// to finish its handshake keeps its place while 1000 silent peers arrive
// after it and evict one another; it is then served.
func TestSlowPeerWithKeyNotDropped(t *testing.T) {
	enoughFiles(t, 3*silentPeers)
	l, evicted := evictingListener(t)
	acc := acceptOne(t, l)
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := &pausingPeer{Stream: auth.Stream{RW: nc}, paused: make(chan struct{}), resume: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- auth.Client(p, testKey, nil) }()
	select {
	case <-p.paused:
	case err := <-done:
		t.Fatalf("handshake ended early: %v", err)
	}

	flood(t, l.Addr().String(), silentPeers)
	// Wait until the flood has filled every place and silent peers have
	// evicted each other: the slow peer, the oldest, would have gone
	// first if it could be.
	deadline := time.Now().Add(20 * time.Second)
	for evicted.Load() < silentPeers-connection.MaxHandshakes {
		if time.Now().After(deadline) {
			t.Fatalf("only %d silent peers dropped", evicted.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(p.resume)
	if err := <-done; err != nil {
		t.Fatalf("slow peer's handshake: %v", err)
	}
	s := (<-acc).conn(t)
	if _, err := nc.Write(frameOf([]byte("still here"))); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RecvBytes(0); err != nil || string(got) != "still here" {
		t.Fatalf("got %q, %v", got, err)
	}
	nc.Close()
}

// TestUnacceptedDoNotBlock: authenticated connections that the program
// has not accepted yet, more of them than handshakes can run at once, do
// not stop the Listener from authenticating the next client.
func TestUnacceptedDoNotBlock(t *testing.T) {
	l, _ := evictingListener(t)
	n := connection.MaxHandshakes + 50
	waiting := make([]*mp.Conn, 0, n)
	defer func() {
		for _, c := range waiting {
			c.Close()
		}
	}()
	for range n {
		c, err := connection.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), testKey)
		if err != nil {
			t.Fatalf("client %d of %d not yet accepted: %v", len(waiting), n, err)
		}
		waiting = append(waiting, c)
	}
	start := time.Now()
	c, err := connection.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), testKey)
	if err != nil {
		t.Fatalf("next client: %v", err)
	}
	c.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("next client authenticated after %v", d)
	}
}

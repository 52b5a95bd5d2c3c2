//go:build linux

package connection_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/testcert"
)

// tlsListen starts a TLS Listener on 127.0.0.1 that requires client
// certificates signed by ca.
func tlsListen(t *testing.T, ca *testcert.Authority) (*connection.Listener, chan error) {
	t.Helper()
	errs := make(chan error, 64)
	lc := connection.ListenConfig{
		TLS:              ca.ServerConfig(true),
		OnHandshakeError: func(_ net.Addr, err error) { errs <- err },
	}
	l, err := lc.Listen("tcp", "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, errs
}

// tapProxy forwards one connection to addr and records what the client
// sends through it.
type tapProxy struct {
	ln   net.Listener
	mu   sync.Mutex
	sent bytes.Buffer
	wg   sync.WaitGroup
}

func newTapProxy(t *testing.T, addr string) *tapProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tapProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		in, err := ln.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer out.Close()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// Not spliced: splice keeps pipes open in a pool, which
			// the leak check would count.
			io.Copy(in, struct{ io.Reader }{out})
			in.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(out, io.TeeReader(in, writerFunc(func(b []byte) (int, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.sent.Write(b)
		})))
		out.(*net.TCPConn).CloseWrite()
	}()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestTLS: a TLS Listener requiring client certificates and a Dialer with
// TLS exchange messages, small and large, and what crosses the wire is
// not the clear text; the ends see each other close.
func TestTLS(t *testing.T) {
	ca := testcert.ForTest(t, "mp test CA")
	l, _ := tlsListen(t, ca)
	tap := newTapProxy(t, l.Addr().String())
	acc := acceptOne(t, l)
	d := connection.Dialer{TLS: ca.ClientConfig()}
	c, err := d.Dial(within(t, 20*time.Second), "tcp", tap.ln.Addr().String(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	s := (<-acc).conn(t)
	exchange(t, c, s)
	secret := bytes.Repeat([]byte("a secret in clear "), 20000) // > the bridge's buffers
	if err := c.SendBytes(secret); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RecvBytes(0); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("large message: %d bytes, %v", len(got), err)
	}
	c.Close()
	if _, err := s.RecvBytes(0); err != io.EOF {
		t.Fatalf("after the client closed: %v", err)
	}
	tap.mu.Lock()
	wire := tap.sent.Bytes()
	if bytes.Contains(wire, []byte("a secret in clear")) || bytes.Contains(wire, []byte("bytes a→b")) {
		t.Error("clear text on the wire")
	}
	tap.mu.Unlock()
}

// TestTLSMismatch: a client without TLS, one with TLS to a plain
// Listener, one that does not trust the server's CA and one without a
// client certificate all fail with clear errors, and the Listener keeps
// serving good clients.
func TestTLSMismatch(t *testing.T) {
	ca := testcert.ForTest(t, "mp test CA")
	other := testcert.ForTest(t, "another CA")
	l, errs := tlsListen(t, ca)
	addr := l.Addr().String()
	dial := func(cfg *connection.Dialer, addr string) error {
		c, err := cfg.Dial(within(t, 20*time.Second), "tcp", addr, testKey)
		if err == nil {
			c.Close()
		}
		return err
	}

	err := dial(&connection.Dialer{}, addr)
	if !errors.Is(err, connection.ErrTLSRequired) || !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("plain client to a TLS listener: %v", err)
	}
	nextErr(t, errs)

	wrongCA := other.ClientConfig()
	wrongCA.Certificates = ca.ClientConfig().Certificates
	if err := dial(&connection.Dialer{TLS: wrongCA}, addr); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("client that does not trust the server's CA: %v", err)
	}
	nextErr(t, errs)

	noCert := ca.ClientConfig()
	noCert.Certificates = nil
	if err := dial(&connection.Dialer{TLS: noCert}, addr); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("client without a certificate: %v", err)
	}
	if err := nextErr(t, errs); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("listener reported %v for a client without a certificate", err)
	}

	foreign := ca.ClientConfig()
	foreign.Certificates = other.ClientConfig().Certificates
	if err := dial(&connection.Dialer{TLS: foreign}, addr); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("client certificate from another CA: %v", err)
	}
	if err := nextErr(t, errs); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("listener reported %v for a foreign client certificate", err)
	}

	acc := acceptOne(t, l)
	d := connection.Dialer{TLS: ca.ClientConfig()}
	c, err := d.Dial(within(t, 20*time.Second), "tcp", addr, testKey)
	if err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	defer c.Close()
	exchange(t, c, (<-acc).conn(t))

	plain, _ := listen(t, "tcp", "", testKey, 0)
	err = dial(&connection.Dialer{TLS: ca.ClientConfig()}, plain.Addr().String())
	if !errors.Is(err, connection.ErrNoTLS) || !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("TLS client to a plain listener: %v", err)
	}
}

// TestTLSClosedWhilePeerStalls: closing a TLS connection's mp.Conn while
// its peer does not read ends the bridge (goroutines, TCP connection,
// socket pair) after the linger, as a plain connection frees everything on
// Close. Before, the bridge stayed blocked in its write to the peer, which
// a hostile peer could make last for ever.
func TestTLSClosedWhilePeerStalls(t *testing.T) {
	t.Cleanup(connection.SetBridgeLinger(100 * time.Millisecond))
	waitBridges(t, 0, "before the test") // the earlier tests' may end late
	ca := testcert.ForTest(t, "mp test CA")
	l, _ := tlsListen(t, ca)
	acc := acceptOne(t, l)
	d := connection.Dialer{TLS: ca.ClientConfig()}
	c, err := d.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := (<-acc).conn(t)

	// The server sends until every buffer on the way is full: the client
	// never reads.
	var sent atomic.Int64
	sendErr := make(chan error, 1)
	go func() {
		msg := make([]byte, 64<<10)
		for {
			if err := s.SendBytes(msg); err != nil {
				sendErr <- err
				return
			}
			sent.Add(1)
		}
	}()
	defer s.Close() // ends the sender whatever happens
	stallSends(t, &sent)

	s.Close()
	select {
	case err := <-sendErr:
		if err == nil {
			t.Error("the blocked send succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked send did not end at Close")
	}
	// The client's bridge lives on; the server's must end.
	waitBridges(t, 1, "after the server closed its end")
	c.Close()
	waitBridges(t, 0, "after both ends closed")
}

// waitBridges waits up to 5 s for the number of live TLS bridges to be
// want.
func waitBridges(t *testing.T, want int64, when string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); connection.LiveBridges() != want; {
		if time.Now().After(end) {
			t.Fatalf("%s: %d live TLS bridges, want %d", when, connection.LiveBridges(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSClosedToSlowPeer: the messages an mp.Conn sent before Close still
// reach a peer that reads late but within the linger, as over a plain
// connection.
func TestTLSClosedToSlowPeer(t *testing.T) {
	t.Cleanup(connection.SetBridgeLinger(3 * time.Second))
	waitBridges(t, 0, "before the test") // the earlier tests' may end late
	ca := testcert.ForTest(t, "mp test CA")
	l, _ := tlsListen(t, ca)
	acc := acceptOne(t, l)
	d := connection.Dialer{TLS: ca.ClientConfig()}
	c, err := d.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := (<-acc).conn(t)

	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		msg := make([]byte, 64<<10)
		for i := 0; ; i++ {
			msg[0] = byte(i)
			if s.SendBytes(msg) != nil {
				return
			}
			sent.Add(1)
		}
	}()
	defer s.Close()
	stallSends(t, &sent)
	s.Close() // the last send, blocked, ends half-way
	<-done
	time.Sleep(time.Second) // the peer is busy: several hang-up checks
	n := sent.Load()
	for i := int64(0); i < n; i++ {
		got, err := c.RecvBytes(0)
		if err != nil || len(got) != 64<<10 || got[0] != byte(i) {
			t.Fatalf("message %d of %d sent before Close: %d bytes, %v", i, n, len(got), err)
		}
	}
	waitBridges(t, 1, "after the server closed its end")
}

// stallSends waits until sent has not moved for 200 ms.
func stallSends(t *testing.T, sent *atomic.Int64) {
	t.Helper()
	last, stalled := sent.Load(), time.Now()
	for end := time.Now().Add(20 * time.Second); time.Since(stalled) < 200*time.Millisecond; {
		if time.Now().After(end) {
			t.Fatal("the server's sends never blocked")
		}
		time.Sleep(20 * time.Millisecond)
		if n := sent.Load(); n != last {
			last, stalled = n, time.Now()
		}
	}
}

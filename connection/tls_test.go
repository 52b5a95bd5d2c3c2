package connection_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
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

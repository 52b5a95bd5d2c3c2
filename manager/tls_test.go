//go:build linux

package manager_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/testcert"
	"github.com/go-mp/mp/manager"
)

// useDict makes a dictionary on m and reads it back: a call works.
func useDict(t *testing.T, ctx context.Context, m *manager.Manager, name string) {
	t.Helper()
	d, err := manager.NewDict[string, int](ctx, m, manager.Named(name))
	check(t, err)
	check(t, d.Set(ctx, "k", 7))
	if v, ok, err := d.Get(ctx, "k"); err != nil || !ok || v != 7 {
		t.Fatalf("Get: %v, %v, %v", v, ok, err)
	}
}

// TestStartTLS: a manager started with Options.TLS on 127.0.0.1 serves
// its starter and a client connecting WithTLS; a plain client and one
// that does not trust the server's CA are refused with clear errors, and
// the server keeps serving.
func TestStartTLS(t *testing.T) {
	ctx := testCtx(t)
	ca := testcert.ForTest(t, "mp manager test CA")
	m, err := manager.Start(ctx, &manager.Options{Network: "tcp", TLS: ca.ServerConfig(false)})
	check(t, err)
	defer m.Close()
	useDict(t, ctx, m, "starter")

	c, err := manager.Connect(ctx, "tcp", m.Address(), nil, manager.WithTLS(ca.ClientConfig()))
	check(t, err)
	useDict(t, ctx, c, "client")
	check(t, c.Close())

	_, err = manager.Connect(ctx, "tcp", m.Address(), nil)
	if !errors.Is(err, connection.ErrTLSRequired) || !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("plain client: %v", err)
	}
	other := testcert.ForTest(t, "another CA")
	_, err = manager.Connect(ctx, "tcp", m.Address(), nil, manager.WithTLS(other.ClientConfig()))
	if !errors.Is(err, mp.ErrAuthentication) || errors.Is(err, manager.ErrManagerGone) {
		t.Errorf("client that does not trust the server's CA: %v", err)
	}
	useDict(t, ctx, m, "starter again")

	// On a unix socket too (the connections then stay on the socket:
	// shared memory cannot go through TLS).
	u, err := manager.Start(ctx, &manager.Options{TLS: ca.ServerConfig(false)})
	check(t, err)
	useDict(t, ctx, u, "over unix")
	check(t, u.Close())

	// What cannot cross to the server process is refused up front.
	if _, err := manager.Start(ctx, &manager.Options{Network: "tcp", TLS: ca.ServerConfig(true)}); err == nil {
		t.Error("Start accepted a configuration that checks client certificates")
	}
}

// TestServeTLSClientCertificates: a server in this process, through a
// TLS Listener that requires client certificates, serves a client that
// presents one and refuses one that does not.
func TestServeTLSClientCertificates(t *testing.T) {
	ctx := testCtx(t)
	ca := testcert.ForTest(t, "mp manager test CA")
	key := []byte("manager tls test key")
	l, err := connection.ListenConfig{TLS: ca.ServerConfig(true)}.Listen("tcp", "127.0.0.1:0", key)
	check(t, err)
	serveHere(t, ctx, l)

	c, err := manager.Connect(ctx, "tcp", l.Addr().String(), key, manager.WithTLS(ca.ClientConfig()))
	check(t, err)
	defer c.Close()
	useDict(t, ctx, c, "d")

	noCert := ca.ClientConfig()
	noCert.Certificates = nil
	if _, err := manager.Connect(ctx, "tcp", l.Addr().String(), key, manager.WithTLS(noCert)); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("client without a certificate: %v", err)
	}
	useDict(t, ctx, c, "d")
}

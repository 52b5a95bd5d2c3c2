//go:build linux

package manager_test

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp/manager"
)

// TestManagerSilentPeersDoNotDelay: with 1000 silent TCP connections
// open (and kept open) to a manager server, a new client still connects
// and gets a call answered at once.
func TestManagerSilentPeersDoNotDelay(t *testing.T) {
	const silent = 1000
	var lim syscall.Rlimit
	check(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur < 2*silent {
		t.Skipf("needs %d open files, the limit is %d", 2*silent, lim.Cur)
	}
	ctx := testCtx(t)
	m, err := manager.Start(ctx, &manager.Options{Network: "tcp"})
	check(t, err)
	defer m.Close()
	for range silent {
		c, err := net.Dial("tcp", m.Address())
		check(t, err)
		defer c.Close()
	}

	start := time.Now()
	m2, err := manager.Connect(ctx, "tcp", m.Address(), nil)
	check(t, err)
	defer m2.Close()
	if _, err := m2.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Connect and a call took %v behind %d silent peers", d, silent)
	}
	t.Logf("Connect and a call took %v behind %d silent peers", time.Since(start), silent)
}

// TestManagerHandshakeTimeout: Options.HandshakeTimeout reaches the
// server: a silent peer is dropped after it, well before the default.
func TestManagerHandshakeTimeout(t *testing.T) {
	ctx := testCtx(t)
	m, err := manager.Start(ctx, &manager.Options{Network: "tcp", HandshakeTimeout: 200 * time.Millisecond})
	check(t, err)
	defer m.Close()
	c, err := net.Dial("tcp", m.Address())
	check(t, err)
	defer c.Close()
	// The challenge comes first, then the end once the timeout passes;
	// the default (10 s) would outlast this deadline.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("silent peer not dropped: %v", err)
	}
}

//go:build linux

package manager

import (
	"context"
	"testing"
	"time"
)

// connOf takes a connection of m's client, for a look at its link.
func connOf(t *testing.T, m *Manager) *cconn {
	t.Helper()
	cc, err := m.c.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.c.put(cc) })
	return cc
}

// A client on the server's machine talks through rings in shared memory;
// one over TCP stays on its socket. Both work.
func TestLinkUpgrade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, network := range []string{"unix", "tcp"} {
		m, err := Start(ctx, &Options{Network: network})
		if err != nil {
			t.Fatal(err)
		}
		cc := connOf(t, m)
		if got, want := cc.c.ring.Load() != nil, network == "unix"; got != want {
			t.Errorf("%s: on rings = %v, want %v", network, got, want)
		}
		d, err := NewDict[string, []byte](ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		big := make([]byte, 300<<10) // larger than a ring
		for i := range big {
			big[i] = byte(i * 7)
		}
		if err := d.Set(ctx, "k", big); err != nil {
			t.Fatal(err)
		}
		got, ok, err := d.Get(ctx, "k")
		if err != nil || !ok || string(got) != string(big) {
			t.Fatalf("%s: large value came back wrong (%d bytes, %v, %v)", network, len(got), ok, err)
		}
		m.Close()
	}
}

// A second upgrade is refused, and the connection goes on working.
func TestLinkUpgradeTwice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cc := connOf(t, m)
	cc.start(opUpgrade, 0, 0)
	if err := cc.roundTrip(ctx); err == nil {
		t.Fatal("second upgrade accepted")
	}
	cc.start(opPing, 0, 0)
	if err := cc.roundTrip(ctx); err != nil {
		t.Fatalf("ping after a refused upgrade: %v", err)
	}
}

//go:build linux && !race

// The race detector's shadow memory makes a 2 GiB message too heavy; CI
// runs this file in a separate pass without -race.

package mp_test

import (
	"testing"
)

// TestHugeMessage sends a message over 2^31-1 bytes, which needs the
// 64-bit length form of the frame header.
func TestHugeMessage(t *testing.T) {
	a, b := pipe(t, true)
	msg := make([]byte, 1<<31+5)
	msg[0], msg[len(msg)-1] = 'a', 'z'
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(msg) }()
	got, err := b.RecvBytes(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msg) || got[0] != 'a' || got[len(got)-1] != 'z' {
		t.Fatalf("got %d bytes", len(got))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

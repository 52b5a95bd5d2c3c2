//go:build linux

package manager

import (
	"testing"
	"time"
)

// A request may take a free lock before a waiter that was woken for it,
// unless that waiter has waited starveAfter; a release then hands the lock
// to it directly.
func TestLockBargingBounded(t *testing.T) {
	a, b, c := &session{pid: 1}, &session{pid: 2}, &session{pid: 3}
	l := &lockObj{gone: newGone()}
	if ok, _ := l.take(a, 0, 1); !ok {
		t.Fatal("free lock not taken")
	}
	w := l.enqueue(b, 0, 1)
	l.handoff() // a releases: free, and b is woken
	if l.holder != nil || w.granted || len(w.ch) != 1 {
		t.Fatalf("release: holder %v, granted %v, woken %v", l.holder, w.granted, len(w.ch) == 1)
	}
	if ok, _ := l.take(c, 0, 1); !ok {
		t.Fatal("a fresh waiter kept a request from the free lock")
	}
	<-w.ch
	w.since = time.Now().Add(-2 * starveAfter) // b has waited long
	l.handoff()                                // c releases
	if l.holder != b || !w.granted || len(l.waiters) != 0 {
		t.Fatalf("release with a starving waiter: holder %v, granted %v", l.holder, w.granted)
	}
	l.handoff() // b releases
	w2 := l.enqueue(c, 0, 1)
	w2.since = time.Now().Add(-2 * starveAfter)
	if ok, _ := l.take(a, 0, 1); ok {
		t.Fatal("a request overtook a starving waiter")
	}
}

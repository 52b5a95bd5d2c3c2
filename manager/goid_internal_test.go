//go:build linux

package manager

import (
	"testing"

	"github.com/go-mp/mp/internal/goid"
)

// TestRLockNamesGoroutinesByGoid acquires a manager RLock and asks the
// server whether the goroutine internal/goid names holds it: the proxies
// name the calling goroutine as mp.RLock does (they used to parse the
// goroutine number out of runtime.Stack), and Held, Release and another
// goroutine's TryAcquire agree.
func TestRLockNamesGoroutinesByGoid(t *testing.T) {
	ctx := hostileCtx(t) // a bound on the test
	m, err := Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := NewRLock(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	cc, err := l.r.call(ctx, opLockHeld, goid.Get())
	if err != nil {
		t.Fatal(err)
	}
	held, depth := cc.boolItem(1), cc.intItem(2)
	l.r.done(cc)
	if !held || depth != 1 {
		t.Fatalf("the server says goroutine %#x holds the lock: %v at depth %d, want true at 1", goid.Get(), held, depth)
	}
	if held, n, err := l.Held(ctx); !held || n != 1 || err != nil {
		t.Fatalf("Held = %v, %d, %v", held, n, err)
	}
	other := make(chan bool)
	go func() {
		ok, _ := l.TryAcquire(ctx)
		other <- ok
	}()
	if <-other {
		t.Fatal("another goroutine acquired the RLock held by this one")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

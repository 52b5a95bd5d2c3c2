//go:build linux

package mp_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type holdArgs struct {
	Lock  *mp.Lock
	RLock *mp.RLock
	Out   *mp.Conn
	// Then: "sleep" holds forever; "release" waits for a message on Out,
	// then releases; "nested" passes the lock on to a grandchild that holds
	// it forever.
	Then string
}

var holdLock = mp.RegisterProc("test.holdLock", holdLockBody)

// holdLockChild is holdLock under another name, for a child to start.
var holdLockChild *mp.Func[holdArgs, struct{}]

func init() { holdLockChild = mp.RegisterProc("test.holdLockChild", holdLockBody) }

func holdLockBody(a holdArgs) error {
	defer a.Out.Close()
	ctx := context.Background()
	switch {
	case a.Then == "nested":
		p := mp.NewProcess(holdLockChild, holdArgs{Lock: a.Lock, RLock: a.RLock, Out: a.Out, Then: "sleep"})
		if err := p.Start(); err != nil {
			return err
		}
		return p.Join(ctx)
	case a.Lock != nil:
		if err := a.Lock.Acquire(ctx); err != nil {
			return err
		}
	default:
		if err := a.RLock.Acquire(ctx); err != nil {
			return err
		}
		if err := a.RLock.Acquire(ctx); err != nil { // re-entrant
			return err
		}
	}
	if err := a.Out.Send(os.Getpid()); err != nil {
		return err
	}
	if a.Then == "sleep" {
		time.Sleep(time.Minute)
	}
	var go_ string
	if err := a.Out.Recv(&go_); err != nil {
		return err
	}
	if a.Lock != nil {
		return a.Lock.Release()
	}
	a.RLock.Release()
	return a.RLock.Release()
}

func newLock(t *testing.T) *mp.Lock {
	l, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newRLock(t *testing.T) *mp.RLock {
	r, err := mp.NewRLock()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLockBasics(t *testing.T) {
	l := newLock(t)
	if l.Locked() || !l.TryAcquire() || !l.Locked() || l.TryAcquire() {
		t.Fatal("TryAcquire/Locked wrong")
	}
	if err := l.Acquire(ctxTimeout(t, 20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire of a held lock = %v", err)
	}
	// Another goroutine may release a Lock (as in Python).
	done := make(chan error)
	go func() { done <- l.Release() }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); !errors.Is(err, mp.ErrNotHeld) {
		t.Fatalf("Release of an unlocked lock = %v", err)
	}
	// A cancelled Acquire wakes at once.
	l.TryAcquire()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire = %v", err)
	}
	// A sleeping waiter is woken by Release.
	go func() { time.Sleep(20 * time.Millisecond); l.Release() }()
	if err := l.Acquire(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	l := newLock(t)
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(holdLock, holdArgs{Lock: l, Out: b, Then: "release"}))
	b.Close()
	var pid int
	if err := a.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	if l.TryAcquire() || !l.Locked() {
		t.Fatal("lock held by the child was taken here")
	}
	got := make(chan error)
	go func() { got <- l.Acquire(ctxTimeout(t, 10*time.Second)) }()
	time.Sleep(20 * time.Millisecond)
	a.Send("go")
	if err := <-got; err != nil {
		t.Fatalf("Acquire after the child released = %v", err)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestLockHolderKilled(t *testing.T) {
	for _, nested := range []bool{false, true} {
		l := newLock(t)
		a, b := pipe(t, true)
		then := "sleep"
		if nested {
			then = "nested"
		}
		p := start(t, mp.NewProcess(holdLock, holdArgs{Lock: l, Out: b, Then: then}))
		b.Close()
		var holder int
		if err := a.Recv(&holder); err != nil {
			t.Fatal(err)
		}
		// One waiter is already asleep when the holder dies.
		waiter := make(chan error)
		go func() { waiter <- l.Acquire(ctxTimeout(t, 10*time.Second)) }()
		time.Sleep(30 * time.Millisecond)
		if nested == (holder == p.Pid()) {
			t.Fatalf("holder pid %d, child pid %d, nested %v", holder, p.Pid(), nested)
		}
		// Kill the holder (a grandchild when nested: its parent then ends).
		syscall.Kill(holder, syscall.SIGKILL)
		start := time.Now()
		err := <-waiter
		var od *mp.OwnerDiedError
		if !errors.As(err, &od) || !errors.Is(err, mp.ErrOwnerDied) || od.Pid != holder {
			t.Fatalf("Acquire after the holder died = %v", err)
		}
		t.Logf("nested=%v: took over from dead pid %d after %v", nested, od.Pid, time.Since(start))
		if !l.Locked() || l.TryAcquire() {
			t.Fatal("lock not held after take-over")
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		p.Kill()
		p.Join(context.Background())
	}
}

func TestRLock(t *testing.T) {
	r := newRLock(t)
	ctx := context.Background()
	if err := r.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if !r.TryAcquire() {
		t.Fatal("re-entrant TryAcquire failed")
	}
	if held, n := r.Held(); !held || n != 2 {
		t.Fatalf("Held = %v, %d", held, n)
	}
	other := make(chan error)
	go func() {
		if r.TryAcquire() {
			other <- errors.New("another goroutine took a held RLock")
			return
		}
		other <- r.Release()
	}()
	if err := <-other; !errors.Is(err, mp.ErrNotHeld) {
		t.Fatalf("Release by a non-owner = %v", err)
	}
	r.Release()
	r.Release()
	if err := r.Release(); !errors.Is(err, mp.ErrNotHeld) {
		t.Fatalf("Release past depth = %v", err)
	}
	go func() { other <- r.Acquire(ctx) }()
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if held, _ := r.Held(); held {
		t.Fatal("RLock held by another goroutine reported as ours")
	}
}

func TestRLockAcrossProcessesAndKill(t *testing.T) {
	r := newRLock(t)
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(holdLock, holdArgs{RLock: r, Out: b, Then: "sleep"}))
	b.Close()
	var pid int
	if err := a.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	if r.TryAcquire() {
		t.Fatal("RLock held by a child was taken here")
	}
	if err := r.Release(); !errors.Is(err, mp.ErrNotHeld) {
		t.Fatalf("Release of a child's RLock = %v", err)
	}
	p.Kill()
	err := r.Acquire(ctxTimeout(t, 10*time.Second))
	if !errors.Is(err, mp.ErrOwnerDied) {
		t.Fatalf("Acquire after the holder died = %v", err)
	}
	if held, n := r.Held(); !held || n != 1 {
		t.Fatalf("after take-over Held = %v, %d", held, n)
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLockValueIncrement is value_lock inside one process: goroutines
// on every P increment a shared Value under a Lock, as two processes do in
// `mp bench value_lock`. Run it with -cpu 1,2.
func BenchmarkLockValueIncrement(b *testing.B) {
	lock, err := mp.NewLock()
	if err != nil {
		b.Fatal(err)
	}

	v, err := mp.NewValue[int64](0, mp.WithLock(lock))
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := lock.Acquire(ctx); err != nil {
				b.Error(err)
				return
			}
			v.Store(v.Load() + 1)
			if err := lock.Release(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if got := v.Load(); got != int64(b.N) {
		b.Fatalf("counted %d increments, want %d", got, b.N)
	}
}

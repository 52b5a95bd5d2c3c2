//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type semArgs struct {
	Ping, Pong *mp.Semaphore
	Bounded    *mp.BoundedSemaphore
	Out        *mp.Conn
	Rounds     int
	// Then: "pingpong" acquires Ping and releases Pong Rounds times;
	// "hold" takes a unit of Ping, reports, and sleeps; "wait" blocks in
	// Ping.Acquire; "limit" takes and gives back a Bounded unit Rounds
	// times, checking with Pong (a second, bounded count) that no more
	// than its value are inside at once.
	Then string
}

var semChild = mp.RegisterProc("test.sem.child", func(a semArgs) error {
	if a.Out != nil {
		defer a.Out.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch a.Then {
	case "pingpong":
		for range a.Rounds {
			if err := a.Ping.Acquire(ctx); err != nil {
				return err
			}
			if err := a.Pong.Release(); err != nil {
				return err
			}
		}
	case "hold":
		if err := a.Ping.Acquire(ctx); err != nil {
			return err
		}
		if err := a.Out.Send(os.Getpid()); err != nil {
			return err
		}
		time.Sleep(time.Minute)
	case "wait":
		if err := a.Out.Send(os.Getpid()); err != nil {
			return err
		}
		return a.Ping.Acquire(ctx)
	case "limit":
		for range a.Rounds {
			if err := a.Bounded.Acquire(ctx); err != nil {
				return err
			}
			if !a.Pong.TryAcquire() {
				return errors.New("more holders inside than the semaphore's value")
			}
			if err := a.Pong.Release(); err != nil {
				return err
			}
			if err := a.Bounded.Release(); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown mode %q", a.Then)
	}
	return nil
})

func mkSem(t testing.TB, n int) *mp.Semaphore {
	t.Helper()
	s, err := mp.NewSemaphore(n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSemaphoreBasics(t *testing.T) {
	for _, v := range []int{-1, mp.MaxSemaphoreValue + 1} {
		if _, err := mp.NewSemaphore(v); err == nil {
			t.Errorf("NewSemaphore(%d) accepted", v)
		}
		if _, err := mp.NewBoundedSemaphore(v); err == nil {
			t.Errorf("NewBoundedSemaphore(%d) accepted", v)
		}
	}
	s := mkSem(t, 2)
	if s.Value() != 2 || !s.TryAcquire() || !s.TryAcquire() || s.TryAcquire() || s.Value() != 0 {
		t.Fatal("TryAcquire/Value wrong")
	}
	if err := s.Acquire(ctxTimeout(t, 20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire of an empty semaphore = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := s.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire = %v", err)
	}
	// A sleeper is woken by a Release from another goroutine.
	go func() { time.Sleep(20 * time.Millisecond); s.Release() }()
	if err := s.Acquire(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Unbounded: releasing past the initial value is fine.
	for range 3 {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if s.Value() != 3 {
		t.Fatalf("Value = %d, want 3", s.Value())
	}
	full := mkSem(t, mp.MaxSemaphoreValue)
	if err := full.Release(); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Fatalf("Release past MaxSemaphoreValue = %v", err)
	}
	// A zero Semaphore is not usable.
	var zero mp.Semaphore
	if zero.Acquire(context.Background()) != mp.ErrClosed || zero.Release() != mp.ErrClosed || zero.TryAcquire() || zero.Value() != 0 {
		t.Fatal("zero Semaphore usable")
	}
}

func TestSemaphoreManyWaiters(t *testing.T) {
	s := mkSem(t, 0)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- s.Acquire(ctxTimeout(t, 10*time.Second)) })
	}
	// One waiter gives up: its wake-up must not be lost for the others.
	if err := s.Acquire(ctxTimeout(t, 30*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	for range n {
		s.Release()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.Value() != 0 {
		t.Fatalf("Value = %d after %d acquires of %d releases", s.Value(), n, n)
	}
}

func TestBoundedSemaphore(t *testing.T) {
	b, err := mp.NewBoundedSemaphore(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Fatalf("over-release = %v", err)
	}
	if b.Value() != 1 {
		t.Fatalf("over-release changed the value to %d", b.Value())
	}
	if err := b.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.TryAcquire() {
		t.Fatal("TryAcquire of an empty BoundedSemaphore")
	}
	if err := b.Acquire(ctxTimeout(t, 20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire of an empty BoundedSemaphore = %v", err)
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Fatalf("second release = %v", err)
	}
	zero, err := mp.NewBoundedSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := zero.Release(); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Fatalf("release of BoundedSemaphore(0) = %v", err)
	}
	var unset mp.BoundedSemaphore
	if unset.Acquire(context.Background()) != mp.ErrClosed || unset.Release() != mp.ErrClosed || unset.TryAcquire() || unset.Value() != 0 {
		t.Fatal("zero BoundedSemaphore usable")
	}
}

func TestSemaphoreWrongTypeOnTheWire(t *testing.T) {
	a, b := pipe(t, true)
	s := mkSem(t, 1)
	bs, err := mp.NewBoundedSemaphore(1)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := mp.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send(s); err != nil {
		t.Fatal(err)
	}
	var gotB *mp.BoundedSemaphore
	if err := b.Recv(&gotB); err == nil {
		t.Fatal("a Semaphore was received as a BoundedSemaphore")
	}
	if err := a.Send(bs); err != nil {
		t.Fatal(err)
	}
	var gotS *mp.Semaphore
	if err := b.Recv(&gotS); err == nil {
		t.Fatal("a BoundedSemaphore was received as a Semaphore")
	}
	if err := a.Send(ev); err != nil {
		t.Fatal(err)
	}
	if err := b.Recv(&gotS); err == nil {
		t.Fatal("an Event was received as a Semaphore")
	}
	// The right types arrive working.
	a.Send(s)
	if err := b.Recv(&gotS); err != nil || !gotS.TryAcquire() || s.Value() != 0 {
		t.Fatalf("Semaphore through a Conn: %v", err)
	}
	a.Send(bs)
	if err := b.Recv(&gotB); err != nil || gotB.Release() != mp.ErrReleasedTooManyTimes || !gotB.TryAcquire() || bs.Value() != 0 {
		t.Fatalf("BoundedSemaphore through a Conn: %v", err)
	}
	var zero mp.Semaphore
	if err := a.Send(&zero); err == nil {
		t.Fatal("a zero Semaphore was sent")
	}
}

func TestSemaphorePingPongAcrossProcesses(t *testing.T) {
	ping, pong := mkSem(t, 0), mkSem(t, 0)
	const rounds = 2000
	p := start(t, mp.NewProcess(semChild, semArgs{Ping: ping, Pong: pong, Rounds: rounds, Then: "pingpong"}))
	ctx := ctxTimeout(t, 30*time.Second)
	for i := range rounds {
		if err := ping.Release(); err != nil {
			t.Fatal(err)
		}
		if err := pong.Acquire(ctx); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if ping.Value() != 0 || pong.Value() != 0 {
		t.Fatalf("values %d, %d after ping-pong", ping.Value(), pong.Value())
	}
}

func TestBoundedSemaphoreLimitsAcrossProcesses(t *testing.T) {
	limit, err := mp.NewBoundedSemaphore(2)
	if err != nil {
		t.Fatal(err)
	}
	inside := mkSem(t, 2)
	var procs []*mp.Process
	for range 3 {
		procs = append(procs, start(t, mp.NewProcess(semChild, semArgs{Bounded: limit, Pong: inside, Rounds: 300, Then: "limit"})))
	}
	for _, p := range procs {
		if err := p.Join(ctxTimeout(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if limit.Value() != 2 || inside.Value() != 2 {
		t.Fatalf("values %d, %d at the end", limit.Value(), inside.Value())
	}
}

// A unit held by a process that dies is not given back; waiters honour
// their ctx.
func TestSemaphoreHolderKilled(t *testing.T) {
	s := mkSem(t, 1)
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(semChild, semArgs{Ping: s, Out: b, Then: "hold"}))
	b.Close()
	var pid int
	if err := a.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	p.Join(context.Background())
	if err := s.Acquire(ctxTimeout(t, 50*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire after the holder died = %v", err)
	}
	if s.Value() != 0 {
		t.Fatalf("unit came back: value %d", s.Value())
	}
	s.Release()
	if !s.TryAcquire() {
		t.Fatal("semaphore unusable after a holder died")
	}
}

// A waiter that dies asleep does not disturb the others.
func TestSemaphoreSleeperKilled(t *testing.T) {
	s := mkSem(t, 0)
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(semChild, semArgs{Ping: s, Out: b, Then: "wait"}))
	b.Close()
	var pid int
	if err := a.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let it fall asleep
	p.Kill()
	p.Join(context.Background())
	got := make(chan error)
	go func() { got <- s.Acquire(ctxTimeout(t, 10*time.Second)) }()
	time.Sleep(20 * time.Millisecond)
	s.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if s.Value() != 0 {
		t.Fatalf("value %d", s.Value())
	}
}

func BenchmarkSemaphorePingPong(b *testing.B) {
	ping, pong := mkSem(b, 0), mkSem(b, 0)
	p := mp.NewProcess(semChild, semArgs{Ping: ping, Pong: pong, Rounds: b.N, Then: "pingpong"})
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		ping.Release()
		if err := pong.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := p.Join(ctx); err != nil {
		b.Fatal(err)
	}
}

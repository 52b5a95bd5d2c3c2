//go:build linux

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp/manager"
)

// startOn starts a manager server child listening on network.
func startOn(t *testing.T, network string) *manager.Manager {
	t.Helper()
	m, err := manager.Start(testCtx(t), &manager.Options{Network: network})
	check(t, err)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// TestShortTimeoutsAreTheCtxs makes 8 goroutines call a Queue's Get on an
// empty queue and a Lock's Acquire on a held lock, over and over, with
// deadlines of 100 µs to 1 ms, so that deadlines end calls at every step:
// while connecting, during the handshake, while the request waits in the
// server. Every call returns the ctx's error (never ErrManagerGone), and
// the manager serves the same client normally afterwards.
func TestShortTimeoutsAreTheCtxs(t *testing.T) {
	rounds := 1500
	if raceEnabled {
		rounds = 300
	}
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ctx := testCtx(t)
			m := startOn(t, network)
			q := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0))
			l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
			check(t, l.Acquire(ctx))
			var (
				wg    sync.WaitGroup
				wrong atomic.Int64
				mu    sync.Mutex
				first []string
			)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range rounds {
						if ctx.Err() != nil {
							return
						}
						d := 100*time.Microsecond + rand.N(900*time.Microsecond)
						cctx, cancel := context.WithTimeout(ctx, d)
						var err error
						if g%2 == 0 {
							_, err = q.Get(cctx)
						} else {
							err = l.Acquire(cctx)
						}
						cancel()
						if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, manager.ErrManagerGone) {
							wrong.Add(1)
							mu.Lock()
							if len(first) < 5 {
								first = append(first, fmt.Sprint(err))
							}
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			check(t, ctx.Err())
			if n := wrong.Load(); n > 0 {
				t.Errorf("%d of %d calls ended by their deadline returned another error, e.g. %q", n, 8*rounds, first)
			}
			// The client still works: its connections were not given up
			// for the manager gone, and nothing waits in the server.
			waitFor(t, func() bool { return serverWaiters(t, m) == 0 })
			check(t, q.Put(ctx, 7))
			equal(t, "Get after the timeouts", must[int](t)(q.Get(ctx)), 7)
			check(t, l.Release(ctx))
			equal(t, "TryAcquire after the timeouts", must[bool](t)(l.TryAcquire(ctx)), true)
		})
	}
}

// TestManagerGoneMatchesEOF breaks the connection to a manager in the ways
// a client meets: nobody listening, a server that resets the connection
// during the handshake, a server killed under idle connections (TCP
// and unix). Every error matches both ErrManagerGone and io.EOF.
func TestManagerGoneMatchesEOF(t *testing.T) {
	ctx := testCtx(t)
	gone := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, manager.ErrManagerGone) || !errors.Is(err, io.EOF) {
			t.Errorf("%s: %v, want ErrManagerGone and io.EOF", what, err)
		}
	}
	_, err := manager.Connect(ctx, "unix", t.TempDir()+"/nothing", nil)
	gone("Connect to nobody", err)

	// A listener that resets every connection at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	_, err = manager.Connect(ctx, "tcp", l.Addr().String(), nil)
	gone("Connect to a server that resets", err)

	for _, network := range []string{"unix", "tcp"} {
		m := startOn(t, network)
		d := must[*manager.Dict[int, int]](t)(manager.NewDict[int, int](ctx, m))
		check(t, d.Set(ctx, 1, 1))
		check(t, m.Process().Kill())
		m.Process().Join(ctx)
		_, _, err := d.Get(ctx, 1)
		gone(network+": call on an idle connection", err)
		_, _, err = d.Get(ctx, 1)
		gone(network+": call that connects", err)
	}
}

// TestReadyWinsOverDoneCtx calls every kind of object with a ctx whose
// deadline has passed, as Python's timeout=0 looks without waiting:
// whatever can complete at once does and returns its result; what would
// wait returns the ctx's error and leaves nothing behind.
func TestReadyWinsOverDoneCtx(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ctx := testCtx(t)
			m := startOn(t, network)
			done, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel()
			ready := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Errorf("%s with a done ctx: %v, want it done", what, err)
				}
			}
			waits := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s with a done ctx: %v, want DeadlineExceeded", what, err)
				}
			}
			for i := range 20 { // the old failure was a coin toss
				q := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 2))
				ready("bounded Put with room", q.Put(done, i))
				ready("second bounded Put with room", q.Put(done, i+1))
				waits("Put on a full queue", q.Put(done, -1))
				v, err := q.Get(done)
				ready("Get of a waiting item", err)
				equal(t, "Get", v, i)
				equal(t, "Get", must[int](t)(q.Get(done)), i+1)
				_, err = q.Get(done)
				waits("Get on an empty queue", err)

				l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
				ready("Lock.Acquire of a free lock", l.Acquire(done))
				waits("Lock.Acquire of a held lock", l.Acquire(done))
				ready("Lock.Release", l.Release(done))

				rl := must[*manager.RLock](t)(manager.NewRLock(ctx, m))
				ready("RLock.Acquire of a free lock", rl.Acquire(done))
				ready("RLock.Acquire again by its holder", rl.Acquire(done))
				held, depth, err := rl.Held(done)
				ready("RLock.Held", err)
				equal(t, "RLock held", [2]any{held, depth}, [2]any{true, 2})

				s := must[*manager.Semaphore](t)(manager.NewSemaphore(ctx, m, 1))
				ready("Semaphore.Acquire with a unit", s.Acquire(done))
				waits("Semaphore.Acquire without", s.Acquire(done))
				bs := must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 1))
				ready("BoundedSemaphore.Acquire with a unit", bs.Acquire(done))

				e := must[*manager.Event](t)(manager.NewEvent(ctx, m))
				waits("Event.Wait of a clear event", e.Wait(done))
				check(t, e.Set(ctx))
				ready("Event.Wait of a set event", e.Wait(done))

				c := must[*manager.Condition](t)(manager.NewCondition(ctx, m, nil))
				ready("Condition.Acquire of a free lock", c.Acquire(done))
				ready("Condition.Notify", c.Notify(done, 1))
				waits("Condition.Wait", c.Wait(done))
				// Wait took the lock back before it returned.
				ready("Condition.Release after Wait", c.Release(ctx))

				b := must[*manager.Barrier](t)(manager.NewBarrier(ctx, m, 1, 0))
				idx, err := b.Wait(done)
				ready("Barrier.Wait of the last party", err)
				equal(t, "Barrier index", idx, 0)

				jq := must[*manager.JoinableQueue[int]](t)(manager.NewJoinableQueue[int](ctx, m, 0))
				ready("JoinableQueue.Join with nothing unfinished", jq.Join(done))

				d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
				ready("Dict.Set", d.Set(done, "k", i))
				v, ok, err := d.Get(done, "k")
				ready("Dict.Get", err)
				equal(t, "Dict.Get", [2]any{v, ok}, [2]any{i, true})
				if t.Failed() {
					break
				}
			}
			waitFor(t, func() bool { return serverWaiters(t, m) == 0 })
		})
	}
}

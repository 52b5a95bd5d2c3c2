//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type condArgs struct {
	Cond  *mp.Condition
	Count *mp.Semaphore
	Out   *mp.Conn
	// Then: "wait" acquires, reports its pid, waits (reporting "woke" or
	// the error) and releases; "waitfor" waits until Count reaches 3;
	// "hold" acquires, notifies all, reports its pid and sleeps holding
	// the lock; "nested" passes the Condition to a grandchild that runs
	// "wait".
	Then string
	// StopAt, if set, names a crash point (mp.Crash...) where the child
	// stops itself, for the parent to kill it there.
	StopAt string
}

var condChild = mp.RegisterProc("test.cond.child", condBody)

var condGrandchild *mp.Func[condArgs, struct{}]

func init() { condGrandchild = mp.RegisterProc("test.cond.grandchild", condBody) }

func condBody(a condArgs) error {
	defer a.Out.Close()
	if a.StopAt != "" {
		mp.SetCrashPointForTest(stopAt(a.StopAt))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch a.Then {
	case "nested":
		p := mp.NewProcess(condGrandchild, condArgs{Cond: a.Cond, Out: a.Out, Then: "wait"})
		if err := p.Start(); err != nil {
			return err
		}
		return p.Join(ctx)
	case "wait", "waitfor":
		if err := a.Cond.Acquire(ctx); err != nil {
			return err
		}
		if err := a.Out.Send(os.Getpid()); err != nil {
			return err
		}
		var err error
		if a.Then == "wait" {
			err = a.Cond.Wait(ctx)
		} else {
			err = a.Cond.WaitFor(ctx, func() bool { return a.Count.Value() >= 3 })
		}
		msg := "woke"
		if err != nil {
			msg = err.Error()
		}
		if err := a.Cond.Release(); err != nil {
			msg += "; release: " + err.Error()
		}
		return a.Out.Send(msg)
	case "hold":
		if err := a.Cond.Acquire(ctx); err != nil {
			return err
		}
		if err := a.Cond.NotifyAll(); err != nil {
			return err
		}
		if err := a.Out.Send(os.Getpid()); err != nil {
			return err
		}
		time.Sleep(time.Minute)
		return nil
	}
	return fmt.Errorf("unknown mode %q", a.Then)
}

func mkCond(t *testing.T, lock mp.SharedLock) *mp.Condition {
	t.Helper()
	c, err := mp.NewCondition(lock)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// condWaiter is a child waiting on a Condition, whose reports arrive on
// msgs.
type condWaiter struct {
	p    *mp.Process
	pid  int
	msgs chan string
}

// startCondWaiter starts a child in mode then and returns once it holds
// the lock and has reported (it is about to wait).
func startCondWaiter(t *testing.T, a condArgs) *condWaiter {
	t.Helper()
	r, w := pipe(t, true)
	a.Out = w
	cw := &condWaiter{p: start(t, mp.NewProcess(condChild, a)), msgs: make(chan string, 1)}
	w.Close()
	if err := r.Recv(&cw.pid); err != nil {
		t.Fatal(err)
	}
	go func() {
		var msg string
		if err := r.Recv(&msg); err != nil {
			msg = "recv: " + err.Error()
		}
		cw.msgs <- msg
	}()
	return cw
}

// goWaiter waits on c in a goroutine: it returns once the goroutine holds
// the lock and is about to wait; the result of Wait arrives on the
// channel.
func goWaiter(t *testing.T, c *mp.Condition, d time.Duration) <-chan error {
	res := make(chan error, 1)
	goWaiterTo(c, d, res)
	return res
}

func goWaiterTo(c *mp.Condition, d time.Duration, res chan<- error) {
	ready := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		if err := c.Acquire(ctx); err != nil {
			close(ready)
			res <- err
			return
		}
		close(ready)
		err := c.Wait(ctx)
		if rerr := c.Release(); rerr != nil && err == nil {
			err = rerr
		}
		res <- err
	}()
	<-ready
}

// condLocked runs fn with the lock held.
func condLocked(t *testing.T, c *mp.Condition, fn func() error) {
	t.Helper()
	if err := c.Acquire(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := fn(); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestConditionErrors(t *testing.T) {
	for _, lock := range []mp.SharedLock{nil, (*mp.Lock)(nil), (*mp.RLock)(nil), newLock(t), newRLock(t)} {
		c := mkCond(t, lock)
		ctx := context.Background()
		if err := c.Wait(ctx); !errors.Is(err, mp.ErrNotHeld) {
			t.Errorf("%T: Wait without the lock = %v", lock, err)
		}
		if err := c.WaitFor(ctx, func() bool { return true }); !errors.Is(err, mp.ErrNotHeld) {
			t.Errorf("%T: WaitFor without the lock = %v", lock, err)
		}
		if err := c.Notify(1); !errors.Is(err, mp.ErrNotHeld) {
			t.Errorf("%T: Notify without the lock = %v", lock, err)
		}
		if err := c.NotifyAll(); !errors.Is(err, mp.ErrNotHeld) {
			t.Errorf("%T: NotifyAll without the lock = %v", lock, err)
		}
		if err := c.Release(); !errors.Is(err, mp.ErrNotHeld) {
			t.Errorf("%T: Release without the lock = %v", lock, err)
		}
		if !c.TryAcquire() {
			t.Fatalf("%T: TryAcquire failed", lock)
		}
		if err := c.Notify(1); err != nil {
			t.Errorf("%T: Notify with no waiter = %v", lock, err)
		}
		if err := c.Release(); err != nil {
			t.Fatal(err)
		}
	}
	// An RLock held by another goroutine is not the caller's.
	c := mkCond(t, nil)
	c.Acquire(context.Background())
	done := make(chan error)
	go func() { done <- c.Wait(context.Background()) }()
	if err := <-done; !errors.Is(err, mp.ErrNotHeld) {
		t.Fatalf("Wait on another goroutine's RLock = %v", err)
	}
	go func() { done <- c.Notify(1) }()
	if err := <-done; !errors.Is(err, mp.ErrNotHeld) {
		t.Fatalf("Notify on another goroutine's RLock = %v", err)
	}
	c.Release()

	if _, err := mp.NewCondition(&mp.Lock{}); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("NewCondition over a zero Lock = %v", err)
	}
	var zero mp.Condition
	if zero.Acquire(context.Background()) != mp.ErrClosed || zero.TryAcquire() || zero.Release() != mp.ErrClosed ||
		zero.Wait(context.Background()) != mp.ErrClosed || zero.Notify(1) != mp.ErrClosed || zero.NotifyAll() != mp.ErrClosed ||
		zero.WaitFor(context.Background(), func() bool { return true }) != mp.ErrClosed {
		t.Fatal("zero Condition usable")
	}
	if _, err := zero.MarshalCBOR(); err != mp.ErrClosed {
		t.Fatalf("MarshalCBOR of a zero Condition = %v", err)
	}
}

func TestConditionWaitTimeoutKeepsTheLock(t *testing.T) {
	// Over an RLock acquired twice: Wait releases it fully and restores
	// the depth.
	c := mkCond(t, nil)
	ctx := context.Background()
	c.Acquire(ctx)
	c.Acquire(ctx)
	// Another goroutine can take the lock while we wait.
	took := make(chan bool)
	go func() {
		ok := c.Acquire(ctxTimeout(t, 5*time.Second)) == nil
		if ok {
			c.Release()
		}
		took <- ok
	}()
	if err := c.Wait(ctxTimeout(t, 50*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
	}
	if !<-took {
		t.Fatal("lock not released during Wait")
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(); err != nil {
		t.Fatal("depth not restored:", err)
	}
	// Over a Lock, with a ctx already done.
	l := newLock(t)
	c = mkCond(t, l)
	c.Acquire(ctx)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Wait(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a done ctx = %v", err)
	}
	if !l.Locked() {
		t.Fatal("lock not held after Wait")
	}
	// WaitFor with a predicate that stays false times out, holding the lock.
	if err := c.WaitFor(ctxTimeout(t, 30*time.Millisecond), func() bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor = %v", err)
	}
	// One that is true at once does not wait.
	if err := c.WaitFor(cancelled, func() bool { return true }); err != nil {
		t.Fatalf("WaitFor(true) = %v", err)
	}
	c.Release()
}

func TestConditionNotifyCounts(t *testing.T) {
	c := mkCond(t, newLock(t))
	// Notify with no one waiting is not remembered.
	condLocked(t, c, func() error { return c.Notify(5) })
	var ws []*condWaiter
	for range 3 {
		ws = append(ws, startCondWaiter(t, condArgs{Cond: c, Then: "wait"}))
	}
	g := goWaiter(t, c, 20*time.Second)
	// Once we hold the lock, every waiter has released it in Wait.
	condLocked(t, c, func() error {
		if err := c.Notify(0); err != nil {
			return err
		}
		return c.Notify(2)
	})
	// The two that have waited longest wake: the first two children.
	for _, w := range ws[:2] {
		select {
		case msg := <-w.msgs:
			if msg != "woke" {
				t.Fatalf("waiter %d: %s", w.pid, msg)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("notified waiter did not wake")
		}
	}
	select {
	case msg := <-ws[2].msgs:
		t.Fatalf("third waiter woke after Notify(2): %s", msg)
	case err := <-g:
		t.Fatalf("fourth waiter woke after Notify(2): %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	condLocked(t, c, c.NotifyAll)
	if msg := <-ws[2].msgs; msg != "woke" {
		t.Fatalf("third waiter: %s", msg)
	}
	if err := <-g; err != nil {
		t.Fatalf("goroutine waiter: %v", err)
	}
	for _, w := range ws {
		if err := w.p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
}

// A waiter whose ctx ended does not take a notification given after, even
// while it waits to retake the lock.
func TestConditionTimedOutWaiterDoesNotSteal(t *testing.T) {
	c := mkCond(t, nil)
	short := goWaiter(t, c, 50*time.Millisecond)
	long := goWaiter(t, c, 20*time.Second)
	condLocked(t, c, func() error {
		// The short waiter's ctx ends while we hold the lock: it withdraws
		// and then waits for the lock.
		time.Sleep(200 * time.Millisecond)
		return c.Notify(1)
	})
	errShort := <-short
	switch {
	case errors.Is(errShort, context.DeadlineExceeded):
	case errShort == nil:
		// Only if the short waiter had not yet withdrawn when notified
		// (a very slow machine) may it have had the notification.
		t.Log("the short waiter was notified before it could withdraw")
		condLocked(t, c, func() error { return c.Notify(1) })
	default:
		t.Fatalf("short waiter: %v", errShort)
	}
	select {
	case err := <-long:
		if err != nil {
			t.Fatalf("long waiter: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long waiter did not get the notification")
	}
}

func TestConditionManyGoroutines(t *testing.T) {
	// A buffer of one item between producers and consumers. (The race
	// detector does not see synchronisation through shared memory, so the
	// Go state is atomic even though the lock guards it.)
	c := mkCond(t, nil)
	var (
		full  atomic.Bool
		taken atomic.Int64
		wg    sync.WaitGroup
	)
	const n = 200
	ctx := ctxTimeout(t, 30*time.Second)
	errs := make(chan error, 4)
	for range 2 {
		wg.Go(func() {
			for range n {
				c.Acquire(ctx)
				if err := c.WaitFor(ctx, func() bool { return !full.Load() }); err != nil {
					errs <- err
					c.Release()
					return
				}
				if !full.CompareAndSwap(false, true) {
					errs <- errors.New("producer: buffer filled under our feet")
				}
				c.NotifyAll()
				c.Release()
			}
		})
		wg.Go(func() {
			for range n {
				c.Acquire(ctx)
				if err := c.WaitFor(ctx, full.Load); err != nil {
					errs <- err
					c.Release()
					return
				}
				if !full.CompareAndSwap(true, false) {
					errs <- errors.New("consumer: buffer emptied under our feet")
				}
				taken.Add(1)
				c.NotifyAll()
				c.Release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if taken.Load() != 2*n {
		t.Fatalf("taken %d, want %d", taken.Load(), 2*n)
	}
}

func TestConditionAcrossProcesses(t *testing.T) {
	// WaitFor in a child on state in shared memory (a semaphore's value).
	count := mkSem(t, 0)
	c := mkCond(t, nil)
	w := startCondWaiter(t, condArgs{Cond: c, Count: count, Then: "waitfor"})
	for range 3 {
		condLocked(t, c, func() error {
			count.Release()
			return c.NotifyAll()
		})
	}
	if msg := <-w.msgs; msg != "woke" {
		t.Fatalf("waitfor child: %s", msg)
	}
	// A grandchild waits on the Condition it got from its parent.
	w = startCondWaiter(t, condArgs{Cond: c, Then: "nested"})
	if w.pid == w.p.Pid() {
		t.Fatal("not a grandchild")
	}
	condLocked(t, c, func() error { return c.Notify(1) })
	if msg := <-w.msgs; msg != "woke" {
		t.Fatalf("grandchild: %s", msg)
	}
	if err := w.p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// A waiter that dies does not swallow a notification: it is handed back
// to a live waiter.
func TestConditionWaiterKilled(t *testing.T) {
	c := mkCond(t, newLock(t))
	dead := startCondWaiter(t, condArgs{Cond: c, Then: "wait"})
	live := goWaiter(t, c, 20*time.Second)
	begin := time.Now()
	condLocked(t, c, func() error {
		// Both wait; the child has waited longer, so Notify(1) picks its
		// slot, though it is dead by then.
		dead.p.Kill()
		return c.Notify(1)
	})
	select {
	case err := <-live:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("notification handed back after %v", time.Since(begin))
	case <-time.After(10 * time.Second):
		t.Fatal("live waiter not woken")
	}
	dead.p.Join(context.Background())
	// The dead waiter's slot is gone: one Notify(1) wakes one new waiter.
	g := goWaiter(t, c, 20*time.Second)
	condLocked(t, c, func() error { return c.Notify(1) })
	if err := <-g; err != nil {
		t.Fatal(err)
	}
}

// A waiter that dies after it was notified, before its Wait returns, does
// not take the notification with it: the next waiter gets it. A (a child)
// waits, then B (a goroutine here); Notify(1) goes to A.
func TestConditionNotifiedWaiterKilled(t *testing.T) {
	for _, newLock := range []func(*testing.T) mp.SharedLock{
		func(t *testing.T) mp.SharedLock { return newLock(t) },
		func(t *testing.T) mp.SharedLock { return newRLock(t) },
	} {
		t.Run(fmt.Sprintf("%T", newLock(t)), func(t *testing.T) {
			t.Run("RetakingTheLock", func(t *testing.T) {
				// A is killed while it waits for the lock, which we hold:
				// B's Wait returns nil.
				lock := newLock(t)
				c := mkCond(t, lock)
				a := startCondWaiter(t, condArgs{Cond: c, Then: "wait"})
				b := goWaiter(t, c, 8*time.Second)
				condLocked(t, c, func() error {
					if err := c.Notify(1); err != nil {
						return err
					}
					// A is past the notification, asleep on the lock.
					waitFor(t, func() bool { return mp.LockHasSleepersForTest(lock) })
					a.p.Kill()
					a.p.Join(ctxTimeout(t, 10*time.Second))
					return nil
				})
				if err := <-b; err != nil {
					t.Fatalf("B's Wait = %v; want nil", err)
				}
			})
			t.Run("HoldingTheLock", func(t *testing.T) {
				// A has retaken the lock and is killed before its Wait
				// returns: B gets the notification, and the lock from
				// its dead holder, so its Wait returns an OwnerDiedError.
				c := mkCond(t, newLock(t))
				a := startCondWaiter(t, condArgs{Cond: c, Then: "wait", StopAt: mp.CrashWaitRetaken})
				b := goWaiter(t, c, 8*time.Second)
				condLocked(t, c, func() error { return c.Notify(1) })
				waitStopped(t, a.pid)
				a.p.Kill()
				a.p.Join(ctxTimeout(t, 10*time.Second))
				var od *mp.OwnerDiedError
				if err := <-b; !errors.As(err, &od) || od.Pid != a.pid || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("B's Wait = %v; want only an OwnerDiedError for pid %d", err, a.pid)
				}
			})
		})
	}
}

// A holder of the lock that dies: the waiter's Wait takes it over.
func TestConditionLockHolderKilled(t *testing.T) {
	l := newLock(t)
	c := mkCond(t, l)
	g := goWaiter(t, c, 20*time.Second)
	r, w := pipe(t, true)
	p := start(t, mp.NewProcess(condChild, condArgs{Cond: c, Out: w, Then: "hold"}))
	w.Close()
	var pid int
	if err := r.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	// The child notified us and holds the lock: our Wait is stuck retaking
	// it until the child dies.
	p.Kill()
	var od *mp.OwnerDiedError
	if err := <-g; !errors.As(err, &od) || od.Pid != pid {
		t.Fatalf("Wait after the lock's holder died = %v", err)
	}
	// (goWaiter released the lock it took over.)
	if l.Locked() {
		t.Fatal("lock still held")
	}
	// Acquire through the Condition after a holder died.
	r, w = pipe(t, true)
	p = start(t, mp.NewProcess(condChild, condArgs{Cond: c, Out: w, Then: "hold"}))
	w.Close()
	if err := r.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := c.Acquire(ctxTimeout(t, 10*time.Second)); !errors.Is(err, mp.ErrOwnerDied) {
		t.Fatalf("Acquire after the holder died = %v", err)
	}
	c.Release()
}

func TestConditionWrongTypeOnTheWire(t *testing.T) {
	a, b := pipe(t, true)
	c := mkCond(t, newLock(t))
	a.Send(c)
	var l *mp.Lock
	if err := b.Recv(&l); err == nil {
		t.Fatal("a Condition was received as a Lock")
	}
	a.Send(newLock(t))
	var got *mp.Condition
	if err := b.Recv(&got); err == nil {
		t.Fatal("a Lock was received as a Condition")
	}
	// Through a Conn in this process, the lock is the same.
	a.Send(c)
	if err := b.Recv(&got); err != nil {
		t.Fatal(err)
	}
	if !c.TryAcquire() {
		t.Fatal("TryAcquire")
	}
	if got.TryAcquire() {
		t.Fatal("received Condition's lock is not the same lock")
	}
	c.Release()
}

func TestConditionTooManyWaiters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MaxConditionWaiters goroutines")
	}
	c := mkCond(t, newLock(t))
	// Fill every slot with a waiter (each asleep on its own thread).
	results := make(chan error, mp.MaxConditionWaiters)
	for range mp.MaxConditionWaiters {
		goWaiterTo(c, 30*time.Second, results)
	}
	c.Acquire(context.Background())
	if err := c.Wait(context.Background()); !errors.Is(err, mp.ErrTooManyWaiters) {
		t.Fatalf("Wait with every slot taken = %v", err)
	}
	if err := c.NotifyAll(); err != nil {
		t.Fatal(err)
	}
	c.Release()
	for range mp.MaxConditionWaiters {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
}

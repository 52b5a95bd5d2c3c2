//go:build linux

package manager_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

type holdAllArgs struct {
	Ref     *manager.Dict[string, int]
	Lock    *manager.Lock
	RLock   *manager.RLock
	Sem     *manager.BoundedSemaphore
	Cond    *manager.Condition
	Barrier *manager.Barrier
	Q       *manager.Queue[int]
	Out     *mp.Conn // the child reports there
	In      *mp.Conn // and waits there before its Get
}

// holdAll makes its session hold one of everything a session can hold in
// a manager: a reference (to Ref), the Lock, the RLock twice, two units of
// the semaphore, a wait in Cond.Wait, a party of the barrier waiting, and
// (once told on In) an item of Q that its Get took and it never
// acknowledges: it parks once the Get's request has left, and waits to be
// killed.
var holdAll = mp.RegisterProc("manager_test.holdAll", func(a holdAllArgs) error {
	ctx := context.Background()
	if _, err := a.Ref.Len(ctx); err != nil {
		return err
	}
	if err := holdLocks(ctx, a.Lock, a.RLock, a.Sem); err != nil {
		return err
	}
	go func() {
		if a.Cond.Acquire(ctx) == nil {
			a.Cond.Wait(ctx)
		}
	}()
	go a.Barrier.Wait(ctx)
	if err := a.Out.Send(1); err != nil {
		return err
	}
	var next int
	if err := a.In.Recv(&next); err != nil {
		return err
	}
	// Its waits keep their connections.
	return parkedGet(ctx, a.Q, a.Out)
})

// holdLocks takes lock, rlock twice, and two units of sem.
func holdLocks(ctx context.Context, lock *manager.Lock, rlock *manager.RLock, sem *manager.BoundedSemaphore) error {
	if err := lock.Acquire(ctx); err != nil {
		return err
	}
	for range 2 {
		if err := rlock.Acquire(ctx); err != nil {
			return err
		}
		if err := sem.Acquire(ctx); err != nil {
			return err
		}
	}
	return nil
}

// parkedGet calls q.Get and parks it once its request has left, after
// sending -1 on out: the server takes an item for it, which it never
// receives nor acknowledges, until the process is killed.
func parkedGet(ctx context.Context, q *manager.Queue[int], out *mp.Conn) error {
	// A connection for the Get first, so that the Get's request is the
	// next one sent.
	if _, err := q.Qsize(ctx); err != nil {
		return err
	}
	manager.SetTestHookSent(func() {
		out.Send(-1)
		time.Sleep(time.Hour)
	})
	_, err := q.Get(ctx)
	return err
}

// TestClientKilledGivesBackEverything kills a child that holds one of
// everything (see holdAll) while the parent waits on the Lock and in the
// Condition behind it: every holding is given back. The parent's Acquire
// gets the Lock and is told the holder died, the RLock is free at depth 0
// (its next acquirer is told too), the semaphore has its units back, the
// Condition's lock is free and a Notify wakes the parent's Wait (the dead
// child's wait is gone, although it came first), the barrier is broken with no party left in it and
// works again after Reset, the item goes back to the front of the queue,
// and the object only the child referred to is freed.
func TestClientKilledGivesBackEverything(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	out, childOut, err := mp.Pipe(false)
	check(t, err)
	defer out.Close()
	childIn, in, err := mp.Pipe(false)
	check(t, err)
	defer in.Close()
	a := holdAllArgs{
		Ref:     must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m)),
		Lock:    must[*manager.Lock](t)(manager.NewLock(ctx, m)),
		RLock:   must[*manager.RLock](t)(manager.NewRLock(ctx, m)),
		Sem:     must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 3)),
		Cond:    must[*manager.Condition](t)(manager.NewCondition(ctx, m, nil)),
		Barrier: must[*manager.Barrier](t)(manager.NewBarrier(ctx, m, 2, 0)),
		Q:       must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0)),
		Out:     childOut,
		In:      childIn,
	}
	check(t, a.Q.Put(ctx, 42))
	check(t, a.Q.Put(ctx, 43))
	p := mp.NewProcess(holdAll, a)
	err = p.Start()
	childOut.Close()
	childIn.Close()
	check(t, err)
	defer p.Join(ctx)
	defer p.Kill()

	var msg int
	check(t, out.Recv(&msg))
	waitFor(t, func() bool { return serverWaiters(t, m) == 2 }) // its Condition and Barrier waits
	// The parent waits on the Lock, and in the Condition behind the child.
	lockErr := make(chan error, 1)
	go func() { lockErr <- a.Lock.Acquire(ctx) }()
	condErr := make(chan error, 1)
	go func() {
		condErr <- func() error {
			if err := a.Cond.Acquire(ctx); err != nil {
				return err
			}
			defer a.Cond.Release(ctx)
			return a.Cond.Wait(ctx)
		}()
	}()
	waitFor(t, func() bool { return serverWaiters(t, m) == 4 })
	check(t, in.Send(1))
	check(t, out.Recv(&msg)) // its Get's request has left
	waitFor(t, func() bool { return must[int](t)(a.Q.Qsize(ctx)) == 1 })
	// Only the child refers to Ref now.
	check(t, a.Ref.Forget(ctx))
	objects := must[manager.Stats](t)(m.Stats(ctx)).Objects

	killAndWait(t, m, p)

	within, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case err := <-lockErr:
		var od *mp.OwnerDiedError
		if !errors.As(err, &od) || od.Pid != p.Pid() {
			t.Errorf("Lock's Acquire after the holder died: %v, want an OwnerDiedError for %d", err, p.Pid())
		}
		check(t, a.Lock.Release(ctx))
	case <-within.Done():
		t.Error("the dead child's Lock was not given back")
	}
	if err := a.RLock.Acquire(within); !errors.Is(err, mp.ErrOwnerDied) {
		t.Errorf("RLock's Acquire after the holder died: %v, want mp.ErrOwnerDied", err)
	}
	held, depth, err := a.RLock.Held(ctx)
	check(t, err)
	equal(t, "RLock held at depth", [2]any{held, depth}, [2]any{true, 1})
	check(t, a.RLock.Release(ctx))
	equal(t, "semaphore value", must[int](t)(a.Sem.Value(ctx)), 3)

	// The child's Wait, ended by its death, takes the Condition's lock back
	// and gives it up at once; when it sees the cancel before the end of
	// the connection, it keeps the lock as a cancelled Wait does, and the
	// end of the session gives it back: the next acquirer is then told.
	if err := a.Cond.Acquire(within); err != nil && !errors.Is(err, mp.ErrOwnerDied) {
		t.Fatalf("Condition's Acquire after the child died: %v", err)
	}
	check(t, a.Cond.Notify(ctx, 1))
	check(t, a.Cond.Release(ctx))
	select {
	case err := <-condErr:
		check(t, err)
	case <-within.Done():
		t.Error("Notify(1) did not wake the live waiter: the dead child's wait took it")
	}

	equal(t, "barrier broken by the dead party", must[bool](t)(a.Barrier.Broken(ctx)), true)
	equal(t, "parties waiting at the barrier", must[int](t)(a.Barrier.NWaiting(ctx)), 0)
	check(t, a.Barrier.Reset(ctx))
	idx := make(chan int, 2)
	for range 2 {
		go func() {
			i, err := a.Barrier.Wait(within)
			check(t, err)
			idx <- i
		}()
	}
	got := []int{<-idx, <-idx}
	slices.Sort(got)
	equal(t, "arrival indexes after Reset", got, []int{0, 1})

	equal(t, "first item after the getter died", must[int](t)(a.Q.TryGet(ctx)), 42)
	equal(t, "second item", must[int](t)(a.Q.TryGet(ctx)), 43)
	equal(t, "objects after the death", must[manager.Stats](t)(m.Stats(ctx)).Objects, objects-1)
}

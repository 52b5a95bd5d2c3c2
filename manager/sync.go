//go:build linux

package manager

import (
	"context"
	"errors"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/goid"
)

// Blocking calls (Acquire, Wait, a Queue's Get and Put...) wait in the
// manager until they can complete or their ctx ends; when ctx ends the
// manager is told, stops waiting for this caller, and the call returns
// ctx.Err() — unless the operation completed first, in which case it
// returns its result as usual.
//
// A call made with a ctx that has already ended is still made, as one
// with Python's timeout=0: it looks without waiting. What can complete at
// once does and returns its result (a Get of a waiting item, an Acquire
// of a free lock, a Put into a queue with room, a Wait on a set Event, the
// last party's Barrier Wait, and every call that never waits); what would
// wait returns ctx.Err() and leaves nothing behind, as if cancelled at
// once: a Condition's Wait takes its lock back before it returns, and a
// Barrier's Wait by another party breaks the barrier, as Python's do with
// timeout=0. So a loop that stops only on an error (Put into an unbounded
// queue, say) does not stop when its ctx ends: test ctx.Err() too.

// ---- Queue ----

// Queue is a proxy of a FIFO queue held by a manager, like Python's
// SyncManager.Queue(). Items from one producer come out in the order it
// put them; getters waiting for items are served in the order they
// arrived.
//
// An item is never lost and never delivered twice when a getter's process
// dies (or its connection to the manager breaks) during a Get or TryGet:
// the manager keeps the item it sent until the proxy acknowledges it,
// which the proxy does once it has received and decoded the item, just
// before Get returns; if the getter ends before that, the item goes back
// to the front of the queue (to the longest-waiting getter, if one waits)
// and still counts as unfinished in a JoinableQueue. So an item whose Get
// returned it is never delivered again, and an item whose Get did not
// return is delivered again — except in one window: a process killed
// after the acknowledgement left and before Get returned (no code of the
// caller runs there) loses the item, as one killed just after Get
// returned would. A Get that returns an error other than a decoding error
// did not take the item; one that failed to decode it did (it is not
// delivered again, since it would fail the same way). The acknowledgement
// is one more message per Get, with no reply.
type Queue[T any] struct{ r ref }

// NewQueue makes a Queue on m's server holding at most maxsize items (0:
// no limit but memory).
func NewQueue[T any](ctx context.Context, m *Manager, maxsize int, opts ...Option) (*Queue[T], error) {
	return newProxy(ctx, m, kindQueue, opts, func(q *Queue[T]) *ref { return &q.r }, maxsize)
}

// Put appends v, waiting for room in a bounded queue until ctx ends.
func (q *Queue[T]) Put(ctx context.Context, v T) error { return q.r.do(ctx, opQueuePut, v) }

// TryPut appends v if there is room, else returns mp.ErrFull.
func (q *Queue[T]) TryPut(ctx context.Context, v T) error { return q.r.do(ctx, opQueueTryPut, v) }

// Get removes and returns the oldest item, waiting for one until ctx
// ends.
func (q *Queue[T]) Get(ctx context.Context) (T, error) {
	return take[T](ctx, &q.r, opQueueGet)
}

// TryGet removes and returns the oldest item if there is one, else
// returns mp.ErrEmpty.
func (q *Queue[T]) TryGet(ctx context.Context) (T, error) {
	return take[T](ctx, &q.r, opQueueTryGet)
}

// take is a Get (op): it decodes the item received, then acknowledges it
// (see Queue).
func take[T any](ctx context.Context, r *ref, op uint64) (T, error) {
	var v T
	cc, err := r.call(ctx, op)
	if err != nil {
		return v, err
	}
	err = cc.decode(1, &v)
	if aerr := cc.ack(ctx); aerr != nil {
		r.done(cc)
		var zero T
		return zero, aerr
	}
	r.done(cc)
	return v, err
}

// Qsize returns the number of items in the queue. It counts every item
// whose Put returned before Qsize was called and that no Get had
// returned by then; items put or taken meanwhile may or may not be
// counted. On a replicated store it also counts the items taken by Gets
// that have not returned (or whose getter died: they come back), and see
// the package documentation for a store with replicas.
func (q *Queue[T]) Qsize(ctx context.Context) (int, error) {
	return result[int](ctx, &q.r, 1, opQueueSize)
}

// Empty reports whether the queue holds no items.
func (q *Queue[T]) Empty(ctx context.Context) (bool, error) {
	n, err := q.Qsize(ctx)
	return n == 0, err
}

// Full reports whether a bounded queue holds maxsize items.
func (q *Queue[T]) Full(ctx context.Context) (bool, error) {
	return result[bool](ctx, &q.r, 1, opQueueFull)
}

// Forget drops this process's reference to the queue.
func (q *Queue[T]) Forget(ctx context.Context) error { return q.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (q *Queue[T]) MarshalCBOR() ([]byte, error) { return q.r.marshal() }

// UnmarshalCBOR receives a proxy of a Queue or JoinableQueue; it connects
// on first use.
func (q *Queue[T]) UnmarshalCBOR(b []byte) error {
	return q.r.unmarshal(b, kindQueue, kindJoinableQueue)
}

// JoinableQueue is a Queue whose consumers report with TaskDone when they
// have finished each item, so that Join can wait for all of them, like
// Python's SyncManager.JoinableQueue().
type JoinableQueue[T any] struct {
	Queue[T]
}

// NewJoinableQueue makes a JoinableQueue on m's server holding at most
// maxsize items (0: no limit).
func NewJoinableQueue[T any](ctx context.Context, m *Manager, maxsize int, opts ...Option) (*JoinableQueue[T], error) {
	return newProxy(ctx, m, kindJoinableQueue, opts, func(q *JoinableQueue[T]) *ref { return &q.r }, maxsize)
}

// TaskDone reports that one item taken from the queue has been processed;
// mp.ErrTaskDone if called more times than items were put.
func (q *JoinableQueue[T]) TaskDone(ctx context.Context) error {
	return q.r.do(ctx, opQueueTaskDone)
}

// Join waits until every item put has been marked done, or ctx ends.
func (q *JoinableQueue[T]) Join(ctx context.Context) error { return q.r.do(ctx, opQueueJoin) }

// UnmarshalCBOR receives a proxy of a JoinableQueue; it connects on first
// use.
func (q *JoinableQueue[T]) UnmarshalCBOR(b []byte) error {
	return q.r.unmarshal(b, kindJoinableQueue)
}

// ---- Lock and RLock ----

// Locker is a lock of a manager that a Condition can be built on: a *Lock
// or an *RLock.
type Locker interface {
	Acquire(ctx context.Context) error
	Release(ctx context.Context) error
	lockRef() *ref
}

// Lock is a proxy of a mutual-exclusion lock held by a manager, like
// Python's SyncManager.Lock(). It is held by a process: any goroutine of
// any process that has it may release it.
//
// When the process holding it ends (or closes its Manager) without
// releasing it, the manager releases it, and the next acquirer gets the
// lock together with an *mp.OwnerDiedError (errors.Is mp.ErrOwnerDied):
// the state the lock protects may be half-updated.
//
// A release wakes the longest waiter, but an Acquire that reaches the
// server first may take the lock before it, as with Python's locks; no
// waiter is overtaken for more than a millisecond (as with Go's
// sync.Mutex).
type Lock struct{ r ref }

// NewLock makes an unlocked Lock on m's server.
func NewLock(ctx context.Context, m *Manager, opts ...Option) (*Lock, error) {
	return newProxy(ctx, m, kindLock, opts, func(l *Lock) *ref { return &l.r })
}

func (l *Lock) lockRef() *ref { return &l.r }

// Acquire waits until the lock is taken or ctx ends. It returns nil,
// ctx.Err() (not taken) or an *mp.OwnerDiedError (taken).
func (l *Lock) Acquire(ctx context.Context) error { return l.r.do(ctx, opLockAcquire, 0) }

// TryAcquire takes the lock if it is free and reports whether it did
// (true with an *mp.OwnerDiedError when it took over from a holder that
// died).
func (l *Lock) TryAcquire(ctx context.Context) (bool, error) {
	return tryAcquire(ctx, &l.r, 0)
}

func tryAcquire(ctx context.Context, r *ref, gid uint64) (bool, error) {
	cc, err := r.call(ctx, opLockTryAcquire, gid)
	if err != nil {
		return isOwnerDied(err), err
	}
	ok := cc.boolItem(1)
	r.done(cc)
	return ok, nil
}

// Release frees the lock; mp.ErrNotHeld if it is not locked. On a
// replicated store, only the proxy that took the lock releases it
// (mp.ErrNotHeld otherwise), and a holder whose lease ran out gets
// ErrLeaseLost (see Token).
func (l *Lock) Release(ctx context.Context) error { return l.r.do(ctx, opLockRelease, 0) }

// Token returns the fencing token of the acquisition this proxy holds, or
// 0 when it holds none. Only a Lock of a replicated store ("nats") has
// tokens (a manager server's locks return 0): there a holder may lose the
// lock without knowing (see ErrLeaseLost), so what the lock protects
// should be given the token with each change, and refuse a change whose
// token is lower than the highest it has seen. Tokens grow with each
// acquisition of the lock, across processes and machines, and across
// the failover of the store's leader.
func (l *Lock) Token() uint64 {
	if l.r.kv == nil {
		return 0
	}
	return l.r.kv.fencingToken()
}

// Locked reports whether the lock is held.
func (l *Lock) Locked(ctx context.Context) (bool, error) {
	return result[bool](ctx, &l.r, 1, opLockLocked)
}

// Forget drops this process's reference to the lock.
func (l *Lock) Forget(ctx context.Context) error { return l.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (l *Lock) MarshalCBOR() ([]byte, error) { return l.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (l *Lock) UnmarshalCBOR(b []byte) error { return l.r.unmarshal(b, kindLock) }

// RLock is a proxy of a re-entrant lock held by a manager, like Python's
// SyncManager.RLock(): the goroutine holding it may acquire it again and
// must release it as many times; only it may release it. A holder that
// ends is handled as for Lock.
//
// Goroutines are told apart as by mp.RLock. A goroutine that ends while
// holding the lock leaves it held by its process, and a goroutine started
// later may be taken for the ended one (the runtime reuses what
// identifies a goroutine) and so hold the lock, as a new thread may reuse
// an ended thread's id in Python.
type RLock struct{ r ref }

// NewRLock makes an unlocked RLock on m's server.
func NewRLock(ctx context.Context, m *Manager, opts ...Option) (*RLock, error) {
	return newProxy(ctx, m, kindRLock, opts, func(l *RLock) *ref { return &l.r })
}

// The calling goroutine is named by internal/goid, as for mp.RLock: a few
// nanoseconds, where parsing runtime.Stack took microseconds and an
// allocation on every call.

func (l *RLock) lockRef() *ref { return &l.r }

// Acquire waits until the calling goroutine holds the lock or ctx ends;
// see Lock.Acquire for the errors.
func (l *RLock) Acquire(ctx context.Context) error { return l.r.do(ctx, opLockAcquire, goid.Get()) }

// TryAcquire takes the lock if it is free or already the caller's.
func (l *RLock) TryAcquire(ctx context.Context) (bool, error) {
	return tryAcquire(ctx, &l.r, goid.Get())
}

// Release undoes one Acquire; mp.ErrNotHeld if the caller does not hold
// the lock.
func (l *RLock) Release(ctx context.Context) error { return l.r.do(ctx, opLockRelease, goid.Get()) }

// Held reports whether the calling goroutine holds the lock, and how many
// times it has acquired it.
func (l *RLock) Held(ctx context.Context) (bool, int, error) { return held(ctx, &l.r) }

func held(ctx context.Context, r *ref) (bool, int, error) {
	cc, err := r.call(ctx, opLockHeld, goid.Get())
	if err != nil {
		return false, 0, err
	}
	ok, n := cc.boolItem(1), cc.intItem(2)
	r.done(cc)
	return ok, n, nil
}

// Forget drops this process's reference to the lock.
func (l *RLock) Forget(ctx context.Context) error { return l.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (l *RLock) MarshalCBOR() ([]byte, error) { return l.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (l *RLock) UnmarshalCBOR(b []byte) error { return l.r.unmarshal(b, kindRLock) }

// ---- Semaphore and BoundedSemaphore ----

// semProxy is what Semaphore and BoundedSemaphore share: all their methods
// but Release, whose documented limit differs, and UnmarshalCBOR, which
// accepts only its own kind. The server knows which kind it holds.
type semProxy struct{ r ref }

// Acquire takes a unit, waiting until one is released or ctx ends.
func (s *semProxy) Acquire(ctx context.Context) error { return s.r.do(ctx, opSemAcquire) }

// TryAcquire takes a unit if there is one and reports whether it did.
func (s *semProxy) TryAcquire(ctx context.Context) (bool, error) {
	return result[bool](ctx, &s.r, 1, opSemTryAcquire)
}

// Value returns the number of units available now.
func (s *semProxy) Value(ctx context.Context) (int, error) {
	return result[int](ctx, &s.r, 1, opSemValue)
}

// Forget drops this process's reference to the semaphore.
func (s *semProxy) Forget(ctx context.Context) error { return s.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (s *semProxy) MarshalCBOR() ([]byte, error) { return s.r.marshal() }

// Semaphore is a proxy of a counting semaphore held by a manager, like
// Python's SyncManager.Semaphore(). Units are not owned: one taken by a
// process that ends without releasing it is lost, as with mp.Semaphore
// (use a BoundedSemaphore to have them given back).
type Semaphore struct{ semProxy }

// NewSemaphore makes a Semaphore on m's server holding value units.
func NewSemaphore(ctx context.Context, m *Manager, value int, opts ...Option) (*Semaphore, error) {
	return newProxy(ctx, m, kindSemaphore, opts, func(s *Semaphore) *ref { return &s.r }, value)
}

// Release gives a unit back, to the longest waiter if there is one.
func (s *Semaphore) Release(ctx context.Context) error { return s.r.do(ctx, opSemRelease) }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (s *Semaphore) UnmarshalCBOR(b []byte) error { return s.r.unmarshal(b, kindSemaphore) }

// BoundedSemaphore is a Semaphore whose value may not rise above its
// initial value (a Release that would is mp.ErrReleasedTooManyTimes),
// like Python's SyncManager.BoundedSemaphore(). The manager counts the
// units each process holds — acquired and not released — and gives them
// back when the process ends (or closes its Manager), up to the bound.
type BoundedSemaphore struct{ semProxy }

// NewBoundedSemaphore makes a BoundedSemaphore on m's server holding value
// units, also its bound.
func NewBoundedSemaphore(ctx context.Context, m *Manager, value int, opts ...Option) (*BoundedSemaphore, error) {
	return newProxy(ctx, m, kindBounded, opts, func(s *BoundedSemaphore) *ref { return &s.r }, value)
}

// Release gives a unit back; mp.ErrReleasedTooManyTimes if the value is
// already the initial one.
func (s *BoundedSemaphore) Release(ctx context.Context) error { return s.r.do(ctx, opSemRelease) }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (s *BoundedSemaphore) UnmarshalCBOR(b []byte) error { return s.r.unmarshal(b, kindBounded) }

// ---- Condition ----

// Condition is a proxy of a condition variable held by a manager, like
// Python's SyncManager.Condition(lock). Its lock is a manager Lock or
// RLock (a new RLock when none is given); Acquire and Release act on it.
// Wait, Notify and NotifyAll need the caller to hold the lock
// (mp.ErrNotHeld otherwise).
type Condition struct{ r ref }

// NewCondition makes a Condition on m's server on lock, a Lock or RLock
// of the same manager, or on a new RLock if lock is nil.
func NewCondition(ctx context.Context, m *Manager, lock Locker, opts ...Option) (*Condition, error) {
	var arg any
	if m != nil && m.kv != nil {
		return newKVProxy(ctx, m, kindCondition, opts, func(c *Condition) *ref { return &c.r }, nil)
	}
	if lock != nil {
		r := lock.lockRef()
		if r.tok.Address == "" {
			return nil, errZeroProxy
		}
		if r.tok.Address != m.c.address || r.tok.Instance != m.c.instance.Load() {
			return nil, ErrWrongKind
		}
		arg = r.tok.ID
	}
	return newProxy(ctx, m, kindCondition, opts, func(c *Condition) *ref { return &c.r }, arg)
}

// Acquire takes the Condition's lock; see Lock.Acquire and
// RLock.Acquire.
func (c *Condition) Acquire(ctx context.Context) error { return c.r.do(ctx, opLockAcquire, goid.Get()) }

// TryAcquire takes the Condition's lock if it is free (or, for an RLock,
// already the caller's).
func (c *Condition) TryAcquire(ctx context.Context) (bool, error) {
	return tryAcquire(ctx, &c.r, goid.Get())
}

// Release releases the Condition's lock.
func (c *Condition) Release(ctx context.Context) error { return c.r.do(ctx, opLockRelease, goid.Get()) }

// Wait releases the lock, waits until notified or ctx ends, and takes the
// lock back before it returns, whatever happened (unless the manager is
// gone). It returns nil when notified, ctx.Err() when ctx ended first, or
// an *mp.OwnerDiedError if it took the lock over from a holder that died.
func (c *Condition) Wait(ctx context.Context) error { return c.r.do(ctx, opCondWait, goid.Get()) }

// WaitFor waits until pred returns true, calling it with the lock held,
// as Python's wait_for does; it returns ctx.Err() if ctx ends first (with
// the lock held).
func (c *Condition) WaitFor(ctx context.Context, pred func() bool) error {
	for !pred() {
		if err := c.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Notify wakes up to n waiters.
func (c *Condition) Notify(ctx context.Context, n int) error {
	return c.r.do(ctx, opCondNotify, goid.Get(), n)
}

// NotifyAll wakes every waiter.
func (c *Condition) NotifyAll(ctx context.Context) error {
	return c.r.do(ctx, opCondNotify, goid.Get(), -1)
}

// Forget drops this process's reference to the condition.
func (c *Condition) Forget(ctx context.Context) error { return c.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (c *Condition) MarshalCBOR() ([]byte, error) { return c.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (c *Condition) UnmarshalCBOR(b []byte) error { return c.r.unmarshal(b, kindCondition) }

// ---- Event ----

// Event is a proxy of an event held by a manager, like Python's
// SyncManager.Event(): a flag that Wait waits for.
type Event struct{ r ref }

// NewEvent makes an Event on m's server, not set.
func NewEvent(ctx context.Context, m *Manager, opts ...Option) (*Event, error) {
	return newProxy(ctx, m, kindEvent, opts, func(e *Event) *ref { return &e.r })
}

// Set sets the flag and wakes every waiter.
func (e *Event) Set(ctx context.Context) error { return e.r.do(ctx, opEventSet) }

// Clear resets the flag.
func (e *Event) Clear(ctx context.Context) error { return e.r.do(ctx, opEventClear) }

// IsSet reports whether the flag is set.
func (e *Event) IsSet(ctx context.Context) (bool, error) {
	return result[bool](ctx, &e.r, 1, opEventIsSet)
}

// Wait waits until the flag is set or ctx ends.
func (e *Event) Wait(ctx context.Context) error { return e.r.do(ctx, opEventWait) }

// Forget drops this process's reference to the event.
func (e *Event) Forget(ctx context.Context) error { return e.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (e *Event) MarshalCBOR() ([]byte, error) { return e.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (e *Event) UnmarshalCBOR(b []byte) error { return e.r.unmarshal(b, kindEvent) }

// ---- Barrier ----

// Barrier is a proxy of a barrier held by a manager, like Python's
// SyncManager.Barrier(parties, timeout) (without an action): each Wait
// blocks until parties Waits are under way, then all return, each with its
// arrival index. It follows Python's threading.Barrier: Abort, or a Wait
// that is cancelled or times out — or whose process ends — breaks it, and
// every Wait returns mp.ErrBrokenBarrier until Reset.
type Barrier struct{ r ref }

// NewBarrier makes a Barrier for parties parties on m's server; a timeout
// above zero bounds each Wait (besides its ctx).
func NewBarrier(ctx context.Context, m *Manager, parties int, timeout time.Duration, opts ...Option) (*Barrier, error) {
	return newProxy(ctx, m, kindBarrier, opts, func(b *Barrier) *ref { return &b.r }, parties, int(timeout))
}

// Wait waits for the other parties and returns the caller's arrival
// index (0 first, parties-1 last). It returns mp.ErrBrokenBarrier if the
// barrier is or becomes broken; if ctx ends (or the barrier's timeout
// passes) during the wait, it breaks the barrier and returns an error that
// matches both mp.ErrBrokenBarrier and ctx.Err() (or
// context.DeadlineExceeded).
func (b *Barrier) Wait(ctx context.Context) (int, error) {
	return result[int](ctx, &b.r, 1, opBarrierWait)
}

// Reset returns the barrier to its initial state; Waits under way return
// mp.ErrBrokenBarrier.
func (b *Barrier) Reset(ctx context.Context) error { return b.r.do(ctx, opBarrierReset) }

// Abort breaks the barrier.
func (b *Barrier) Abort(ctx context.Context) error { return b.r.do(ctx, opBarrierAbort) }

// Parties returns the number of parties the barrier waits for.
func (b *Barrier) Parties(ctx context.Context) (int, error) {
	return result[int](ctx, &b.r, 1, opBarrierInfo)
}

// NWaiting returns the number of parties waiting now.
func (b *Barrier) NWaiting(ctx context.Context) (int, error) {
	return result[int](ctx, &b.r, 2, opBarrierInfo)
}

// Broken reports whether the barrier is broken.
func (b *Barrier) Broken(ctx context.Context) (bool, error) {
	return result[bool](ctx, &b.r, 3, opBarrierInfo)
}

// Forget drops this process's reference to the barrier.
func (b *Barrier) Forget(ctx context.Context) error { return b.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (b *Barrier) MarshalCBOR() ([]byte, error) { return b.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (b *Barrier) UnmarshalCBOR(b2 []byte) error { return b.r.unmarshal(b2, kindBarrier) }

func isOwnerDied(err error) bool { return errors.Is(err, mp.ErrOwnerDied) }

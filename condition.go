//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/goid"
	"github.com/go-mp/mp/internal/shm"
)

// SharedLock is a lock shared between processes that a Condition can be
// built on: a *Lock or an *RLock.
type SharedLock interface {
	Acquire(ctx context.Context) error
	TryAcquire() bool
	Release() error

	// condHeld reports whether the caller holds the lock.
	condHeld() bool
	// condRelease releases the lock however deeply it is held and returns
	// what condRestore needs to take it back as it was.
	condRelease() (depth int, err error)
	// condRestore takes the lock back, waiting as long as it takes (or
	// until it takes over from a dead holder).
	condRestore(depth int) error
}

// A Lock is held by a process, not a goroutine: for a Condition, any
// goroutine of the process that holds it holds it.
func (l *Lock) condHeld() bool {
	held := l.m.word != nil && l.m.owner() == shm.Self()
	runtime.KeepAlive(l)
	return held
}

func (l *Lock) condRelease() (int, error) {
	if !l.condHeld() {
		return 0, ErrNotHeld
	}
	l.m.unlock()
	runtime.KeepAlive(l)
	return 1, nil
}

func (l *Lock) condRestore(int) error {
	dead, err := l.m.lock(context.Background(), shm.Self())
	runtime.KeepAlive(l)
	if err != nil {
		return err
	}
	if dead != 0 {
		return ownerDied(dead)
	}
	return nil
}

func (r *RLock) condHeld() bool {
	held := r.depth != nil && r.mine(shm.Self(), goid.Get())
	runtime.KeepAlive(r)
	return held
}

func (r *RLock) condRelease() (int, error) {
	if r.depth == nil {
		return 0, ErrNotHeld
	}
	defer runtime.KeepAlive(r)
	return r.releaseAll()
}

func (r *RLock) condRestore(depth int) error {
	defer runtime.KeepAlive(r)
	return r.restore(context.Background(), depth)
}

// ErrTooManyWaiters is returned by Condition.Wait when MaxConditionWaiters
// goroutines are already waiting on the Condition.
var ErrTooManyWaiters = errors.New("mp: too many goroutines waiting on the Condition")

// MaxConditionWaiters is how many goroutines, of all processes together,
// can wait on one Condition at a time.
const MaxConditionWaiters = 1024

// Condition is a condition variable shared between processes, like
// Python's multiprocessing.Condition: goroutines of any process that hold
// its lock may Wait until another Notifies them. Pass it to children as
// (part of) an argument; its lock travels with it.
//
// Each waiter takes a slot in shared memory that records its process and
// a ticket for its place in line. Notify(n) hands notifications to the n
// longest-waiting slots, each exactly once: a waiter whose ctx ends
// withdraws its slot before it takes the lock back, so it cannot take a
// notification given after that; one that was notified before it could
// withdraw returns nil, having consumed it.
//
// Processes that die:
//   - A holder of the lock that dies is handled by the lock: the next
//     Acquire, or the lock's retaking at the end of Wait, takes it over
//     and returns an *OwnerDiedError (errors.Is ErrOwnerDied) with the
//     lock held.
//   - A waiter that dies leaves its slot behind, and a notification
//     stays on its receiver's slot until that Wait has taken the lock
//     back: consuming it (freeing the slot) is the last thing Wait does.
//     Notify does not check whether waiters are alive (that costs system
//     calls), so it may hand a notification to a dead waiter; the waiters
//     still alive check the others' slots now and then (after 10 ms, then
//     at most every 100 ms) while they sleep, free the slots of dead
//     processes, and hand any notification found on one to the
//     longest-waiting live waiter.
//
// So a notification whose receiver dies before its Wait returns (whether
// before the Notify, while retaking the lock, or holding it again) passes
// to a live waiter, if one waits or comes to wait: it is never lost while
// a live waiter waits, but it may arrive up to about 100 ms late, and it
// may go to a waiter that started waiting after the Notify. If the
// receiver died holding the lock again, the waiter that gets the
// notification also takes the lock over, and its Wait returns the
// *OwnerDiedError (which then says nothing of whether it was notified).
// A receiver that dies after its Wait returned has consumed the
// notification.
type Condition struct {
	s     shared
	lock  SharedLock
	plain *Lock // one of plain and re is the lock, for MarshalCBOR
	re    *RLock

	active *atomic.Uint32 // slots not free (an upper bound)
	hi     *atomic.Uint32 // slots ever used: 0..hi-1
	ticket *atomic.Uint64 // last ticket handed out
}

// The state of a Condition:
//
//	0  active uint32
//	4  hi     uint32
//	8  ticket uint64
//	16 MaxConditionWaiters slots of 32 bytes:
//	   0  state  uint32: generation<<2 | slot state; the waiter sleeps on it
//	   8  owner  uint64 (shm.Self of the waiter's process)
//	   16 ticket uint64
//
// A slot's generation rises each time it is claimed, so that a slot freed
// and claimed again is not mistaken for the one a compare-and-swap read.
// (A process that dies in the few instructions between claiming a slot
// and marking it waiting leaves it claimed for good: one slot fewer.)
const (
	condSlotsOff = 16
	condSlotSize = 32
)

const (
	slotFree     = 0
	slotClaimed  = 1 // being filled in by its waiter
	slotWaiting  = 2
	slotNotified = 3
)

// NewCondition returns a Condition over lock, a *Lock or an *RLock, or
// over a new RLock if lock is nil (as in Python).
func NewCondition(lock SharedLock) (*Condition, error) {
	var plain *Lock
	var re *RLock
	switch l := lock.(type) {
	case nil:
	case *Lock:
		plain = l
	case *RLock:
		re = l
	default:
		return nil, fmt.Errorf("mp: a Condition needs a *Lock or *RLock, not %T", lock)
	}
	if plain == nil && re == nil {
		var err error
		if re, err = NewRLock(); err != nil {
			return nil, err
		}
	}
	if (plain != nil && plain.m.word == nil) || (re != nil && re.depth == nil) {
		return nil, ErrClosed
	}
	s, err := newShared(kindCondition, condSlotsOff+condSlotSize*MaxConditionWaiters)
	if err != nil {
		return nil, err
	}
	c := &Condition{}
	c.init(s, plain, re)
	return c, nil
}

func (c *Condition) init(s shared, plain *Lock, re *RLock) {
	*c = Condition{s: s, plain: plain, re: re, active: s.u32(0), hi: s.u32(4), ticket: s.u64(8)}
	if plain != nil {
		c.lock = plain
	} else {
		c.lock = re
	}
	autoRelease(c, s)
}

// slotState, slotOwner and slotTicket return the words of slot i.
func (c *Condition) slotState(i int) *atomic.Uint32 { return c.s.u32(slotOff(i)) }

func (c *Condition) slotOwner(i int) *atomic.Uint64 { return c.s.u64(slotOff(i) + 8) }

func (c *Condition) slotTicket(i int) *atomic.Uint64 { return c.s.u64(slotOff(i) + 16) }

func slotOff(i int) int { return condSlotsOff + condSlotSize*i }

// Acquire acquires the Condition's lock; see Lock.Acquire and
// RLock.Acquire.
func (c *Condition) Acquire(ctx context.Context) error {
	if c.lock == nil {
		return ErrClosed
	}
	return c.lock.Acquire(ctx)
}

// TryAcquire acquires the Condition's lock if it is free (or, for an
// RLock, already the caller's) and reports whether it did.
func (c *Condition) TryAcquire() bool { return c.lock != nil && c.lock.TryAcquire() }

// Release releases the Condition's lock.
func (c *Condition) Release() error {
	if c.lock == nil {
		return ErrClosed
	}
	return c.lock.Release()
}

// Wait releases the lock, which the caller must hold (else ErrNotHeld),
// however many times an RLock was acquired; waits until it is notified or
// ctx is done; and then takes the lock back as it was. It returns nil when
// notified, ctx.Err() when ctx ended first.
//
// As in Python, Wait always returns with the lock held, even when ctx is
// done, so it may return after ctx's deadline, once the lock is free. If
// the lock's holder died, Wait takes it over and returns an
// *OwnerDiedError (joined with ctx.Err() if ctx ended too). There are no
// spurious wake-ups: nil means notified.
//
// For a Condition over a Lock, "holds" means that the caller's process
// holds it, since a Lock has no owning goroutine.
func (c *Condition) Wait(ctx context.Context) error {
	if c.lock == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(c)
	if !c.lock.condHeld() {
		return ErrNotHeld
	}
	me := shm.Self()
	i, waiting, err := c.register(me)
	if err != nil {
		return err
	}
	depth, err := c.lock.condRelease()
	if err != nil {
		c.free(i, waiting)
		return err
	}
	werr := c.sleep(ctx, i, waiting, me)
	rerr := c.lock.condRestore(depth)
	if werr == nil {
		// Only now, with the lock retaken, is the notification consumed:
		// until here our slot stays notified, so that if this process
		// dies, a live waiter finds the notification there and takes it.
		if crashPoint != nil {
			crashPoint(crashWaitRetaken)
		}
		c.free(i, waiting)
	}
	switch {
	case rerr == nil:
		return werr
	case werr == nil:
		return rerr
	}
	return errors.Join(werr, rerr)
}

// WaitFor waits until pred, called with the lock held, returns true: it
// returns nil as soon as pred does (at once if it already does), and
// ctx.Err() if ctx ends with pred still false. The caller must hold the
// lock, and holds it when WaitFor returns. If the lock is taken over from
// a dead holder, WaitFor returns the *OwnerDiedError at once, without
// calling pred again.
func (c *Condition) WaitFor(ctx context.Context, pred func() bool) error {
	if c.lock == nil {
		return ErrClosed
	}
	if !c.lock.condHeld() {
		return ErrNotHeld
	}
	for !pred() {
		err := c.Wait(ctx)
		if err == nil {
			continue
		}
		if errors.Is(err, ErrOwnerDied) || ctx.Err() == nil {
			return err
		}
		if pred() {
			return nil
		}
		return err
	}
	return nil
}

// Notify wakes at most n of the goroutines waiting on the Condition, those
// that have waited longest. The caller must hold the lock (else
// ErrNotHeld). Notifying when no one waits does nothing.
func (c *Condition) Notify(n int) error {
	if c.lock == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(c)
	if !c.lock.condHeld() {
		return ErrNotHeld
	}
	c.notify(n, 0, nil)
	return nil
}

// NotifyAll wakes every goroutine waiting on the Condition. The caller
// must hold the lock (else ErrNotHeld).
func (c *Condition) NotifyAll() error { return c.Notify(MaxConditionWaiters) }

// register claims a free slot for a waiter of process me and returns it
// with its waiting state word.
func (c *Condition) register(me uint64) (int, uint32, error) {
	for i := range MaxConditionWaiters {
		st := c.slotState(i)
		w := st.Load()
		if w&3 != slotFree {
			continue
		}
		claimed := (w&^3 + 4) | slotClaimed
		if !st.CompareAndSwap(w, claimed) {
			continue
		}
		c.active.Add(1)
		for {
			h := c.hi.Load()
			if h > uint32(i) || c.hi.CompareAndSwap(h, uint32(i+1)) {
				break
			}
		}
		c.slotOwner(i).Store(me)
		c.slotTicket(i).Store(c.ticket.Add(1))
		waiting := claimed&^3 | slotWaiting
		st.Store(waiting)
		return i, waiting, nil
	}
	return -1, 0, ErrTooManyWaiters
}

// free frees slot i, claimed with the state word waiting by a waiter of
// this process.
func (c *Condition) free(i int, waiting uint32) {
	c.slotState(i).Store(waiting&^3 | slotFree)
	c.active.Add(^uint32(0))
}

// sleep waits on slot i until it is notified (nil: the slot stays
// notified, for Wait to free) or ctx is done (ctx.Err(): the slot is
// withdrawn and freed).
func (c *Condition) sleep(ctx context.Context, i int, waiting uint32, me uint64) error {
	st := c.slotState(i)
	if ctx.Err() == nil && spin(func() bool { return st.Load() != waiting }) {
		return nil
	}
	s := newSleeper(ctx, st)
	defer s.done()
	interval := firstOwnerCheck
	lastCheck := time.Now()
	for {
		if st.Load() != waiting {
			// Only a notification changes a waiting slot of a live
			// process.
			return nil
		}
		if err := s.sleep(st, waiting, interval); err != nil {
			if st.CompareAndSwap(waiting, waiting&^3|slotFree) {
				c.active.Add(^uint32(0))
				return err
			}
			continue // notified before it could withdraw: take it
		}
		if time.Since(lastCheck) >= interval {
			lastCheck = time.Now()
			interval = min(2*interval, maxOwnerCheck)
			c.reap(me)
		}
	}
}

// notify hands up to n notifications to waiting slots, longest-waiting
// first. With alive set (when handing back notifications found on dead
// waiters' slots), it skips and frees the slots of dead processes.
func (c *Condition) notify(n int, me uint64, alive func(uint64) bool) {
	if n <= 0 || c.active.Load() == 0 {
		return
	}
	type cand struct {
		i      int
		w      uint32
		ticket uint64
	}
	var buf [16]cand
	cands := buf[:0]
	hi := int(min(c.hi.Load(), MaxConditionWaiters))
	for i := range hi {
		if w := c.slotState(i).Load(); w&3 == slotWaiting {
			cands = append(cands, cand{i, w, c.slotTicket(i).Load()})
		}
	}
	if len(cands) > n {
		slices.SortFunc(cands, func(a, b cand) int {
			switch {
			case a.ticket < b.ticket:
				return -1
			case a.ticket > b.ticket:
				return 1
			}
			return 0
		})
	}
	for _, k := range cands {
		if n == 0 {
			return
		}
		st := c.slotState(k.i)
		if alive != nil {
			if o := c.slotOwner(k.i).Load(); o != me && !alive(o) {
				if st.CompareAndSwap(k.w, k.w&^3|slotFree) {
					c.active.Add(^uint32(0))
				}
				continue
			}
		}
		// A waiter that withdrew (or was freed) fails the swap.
		if st.CompareAndSwap(k.w, k.w&^3|slotNotified) {
			futex.Wake(st, 1)
			n--
		}
	}
}

// reap frees the slots of waiters whose process died, and hands any
// notification found on them back to live waiters.
func (c *Condition) reap(me uint64) {
	known := map[uint64]bool{}
	alive := func(o uint64) bool {
		a, ok := known[o]
		if !ok {
			a = shm.Alive(o)
			known[o] = a
		}
		return a
	}
	lost := 0
	hi := int(min(c.hi.Load(), MaxConditionWaiters))
	for i := range hi {
		st := c.slotState(i)
		w := st.Load()
		if w&3 != slotWaiting && w&3 != slotNotified {
			continue
		}
		// If the slot was freed and claimed again since w was read, the
		// owner read may be the new one; the swap then fails.
		o := c.slotOwner(i).Load()
		if o == me || alive(o) {
			continue
		}
		if st.CompareAndSwap(w, w&^3|slotFree) {
			c.active.Add(^uint32(0))
			if w&3 == slotNotified {
				lost++
			}
		}
	}
	c.notify(lost, me, alive)
}

// condWire is a Condition on the wire: its own memory and its lock.
type condWire struct {
	_     struct{} `cbor:",toarray"`
	Cond  cbor.RawMessage
	Lock  *Lock
	RLock *RLock
}

// MarshalCBOR lets a Condition, with its lock, travel to another process
// inside a message.
func (c *Condition) MarshalCBOR() ([]byte, error) {
	if c.lock == nil {
		return nil, ErrClosed
	}
	b, err := c.s.marshal()
	if err != nil {
		return nil, err
	}
	return codec.Marshal(condWire{Cond: b, Lock: c.plain, RLock: c.re})
}

// UnmarshalCBOR receives a Condition sent by mp.
func (c *Condition) UnmarshalCBOR(data []byte) error {
	var w condWire
	if err := codec.Unmarshal(data, &w); err != nil {
		return err
	}
	if (w.Lock == nil) == (w.RLock == nil) {
		return errors.New("mp: a Condition arrived without its lock")
	}
	s, err := unmarshalShared(w.Cond, kindCondition)
	if err != nil {
		return err
	}
	if len(s.seg.Bytes()) < headerSize+condSlotsOff+condSlotSize*MaxConditionWaiters {
		s.release()
		return errors.New("mp: malformed shared Condition")
	}
	c.init(s, w.Lock, w.RLock)
	return nil
}

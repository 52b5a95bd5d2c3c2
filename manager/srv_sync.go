//go:build linux

package manager

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
)

// ---- Lock and RLock ----

// lockObj is a Lock, or with reentrant an RLock. A Lock is held by a
// session (any goroutine of the process may release it, as in Python); an
// RLock by a goroutine of a session.
//
// Release frees the lock and wakes the longest waiter to take it, but a
// request that comes first may take it instead (as with Python's locks):
// handing the lock to a waiter that must first wake up would leave it
// idle meanwhile, and a process that releases and acquires in a loop
// would wait for every other one each time. Once the longest waiter has
// waited starveAfter, release hands the lock to it and nobody else may
// take it first, so that no one waits for long (as Go's sync.Mutex does).
type lockObj struct {
	mu        sync.Mutex
	reentrant bool
	holder    *session
	gid       uint64
	depth     int
	died      int     // pid of a holder that died; told to the next acquirer
	held      holding // the lock in its holder's record
	waiters   []*waiter
	gone      gone
}

func (l *lockObj) kind() string {
	if l.reentrant {
		return "RLock"
	}
	return "Lock"
}

// starveAfter is how long a waiter may be overtaken by later requests.
const starveAfter = time.Millisecond

// starving reports whether the longest waiter has waited starveAfter.
// Called with mu held.
func (l *lockObj) starving() bool {
	return len(l.waiters) > 0 && time.Since(l.waiters[0].since) >= starveAfter
}

// take takes the lock if it is free (or, for an RLock, already the
// caller's), unless a starving waiter comes first. Called with mu held.
func (l *lockObj) take(sess *session, gid uint64, depth int) (ok bool, died int) {
	switch {
	case l.holder == nil && !l.starving():
		l.setHolder(sess, gid, depth)
		died, l.died = l.died, 0
		return true, died
	case l.reentrant && l.holder == sess && l.gid == gid:
		l.depth += depth
		return true, 0
	}
	return false, 0
}

// setHolder makes sess (nil: nobody) the holder, keeping the record of
// what sessions hold (see session) up to date. Called with mu held.
func (l *lockObj) setHolder(sess *session, gid uint64, depth int) {
	if l.holder != sess {
		if l.holder != nil {
			l.holder.unhold(&l.held)
		}
		if sess != nil {
			l.held.h = l
			sess.hold(&l.held)
		}
	}
	l.holder, l.gid, l.depth = sess, gid, depth
}

// owned reports whether the caller holds the lock: for a Lock, any
// goroutine of the holding session does.
func (l *lockObj) owned(sess *session, gid uint64) bool {
	return l.holder == sess && (!l.reentrant || l.gid == gid)
}

// handoff frees the lock and wakes the longest waiter to take it, or
// gives it to that waiter if it is starving. Called with mu held.
func (l *lockObj) handoff() {
	if len(l.waiters) == 0 || !l.starving() {
		l.setHolder(nil, 0, 0)
		if len(l.waiters) > 0 {
			l.waiters[0].nudge()
		}
		return
	}
	var w *waiter
	w, l.waiters = popWaiter(l.waiters)
	l.giveTo(w)
	w.grant()
}

// giveTo makes w (already out of the queue) the holder. Called with mu
// held.
func (l *lockObj) giveTo(w *waiter) {
	l.setHolder(w.sess, w.gid, w.depth)
	w.ownerDied, l.died = l.died, 0
}

// enqueue adds a waiter for the lock. Called with mu held.
func (l *lockObj) enqueue(sess *session, gid uint64, depth int) *waiter {
	w := newWaiter(sess)
	w.gid, w.depth = gid, depth
	l.waiters = append(l.waiters, w)
	return w
}

// await waits for w to be granted the lock. stop ends the wait (a cancel,
// or only the end of the connection); it reports whether the lock is
// held, and the reply has been written when not.
func (l *lockObj) await(w *waiter, stop <-chan struct{}, p *pending, r *reply) bool {
	for {
		w.wait(stop, &l.gone)
		l.mu.Lock()
		if w.granted || ended(stop) || l.gone.isClosed() {
			break
		}
		// Woken by a release: take the lock unless a request came first.
		if l.holder == nil {
			l.waiters = removeWaiter(l.waiters, w)
			l.giveTo(w)
			w.granted = true
			break
		}
		l.mu.Unlock()
	}
	if !w.granted {
		l.waiters = removeWaiter(l.waiters, w)
		if l.holder == nil && len(l.waiters) > 0 {
			l.waiters[0].nudge() // it may have been woken in our place
		}
		l.mu.Unlock()
		endWait(r, &l.gone)
		return false
	}
	if p.isDead() {
		// Granted, but the client will never know: give it back.
		if l.holder == w.sess && l.gid == w.gid {
			l.handoff()
		}
		l.mu.Unlock()
		cancelled(r)
		return false
	}
	l.mu.Unlock()
	return true
}

func acquired(r *reply, died int) {
	if died != 0 {
		r.fail(codeOwnerDied, fmt.Sprintf("manager: lock taken over from process %d, which died holding it", died), died)
		return
	}
	r.ok()
}

// sessionGone frees the lock if sess holds it, and tells the next
// acquirer; a lock freed meanwhile goes to nobody, as its waiters have
// been told it is gone.
func (l *lockObj) sessionGone(sess *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.holder != sess:
	case l.gone.isClosed():
		l.setHolder(nil, 0, 0)
	default:
		l.died = sess.pid
		l.handoff()
		if l.reentrant {
			sess.gave.rlocks.Add(1)
		} else {
			sess.gave.locks.Add(1)
		}
	}
}

func (l *lockObj) free() ([][]byte, []uint64) {
	l.gone.close()
	return nil, nil
}

func (l *lockObj) handle(x *call) waitFn {
	r := x.r
	if x.op == opLockLocked {
		l.mu.Lock()
		held := l.holder != nil
		l.mu.Unlock()
		r.ok()
		r.bool(held)
		return nil
	}
	if !x.need(1) {
		return nil
	}
	gid, _, err := codec.ReadUint(x.args[0])
	if err != nil {
		r.fail(codeProtocol, "manager: bad goroutine id")
		return nil
	}
	sess := x.sess
	l.mu.Lock()
	defer l.mu.Unlock()
	switch x.op {
	case opLockAcquire:
		if ok, died := l.take(sess, gid, 1); ok {
			acquired(r, died)
			return nil
		}
		w := l.enqueue(sess, gid, 1)
		return func(p *pending, r *reply) {
			if l.await(w, p.cancel, p, r) {
				acquired(r, w.ownerDied)
			}
		}
	case opLockTryAcquire:
		ok, died := l.take(sess, gid, 1)
		if ok && died != 0 {
			acquired(r, died)
			return nil
		}
		r.ok()
		r.bool(ok)
	case opLockRelease:
		switch {
		case l.holder == nil:
			r.fail(codeNotHeld, "manager: release of an unlocked "+l.kind())
			return nil
		case l.reentrant && !l.owned(sess, gid):
			r.fail(codeNotHeld, "manager: release of an RLock not held by the caller")
			return nil
		}
		l.depth--
		if !l.reentrant || l.depth == 0 {
			l.handoff()
		}
		r.ok()
	case opLockHeld:
		r.ok()
		if l.owned(sess, gid) {
			r.bool(true)
			r.int(l.depth)
		} else {
			r.bool(false)
			r.int(0)
		}
	default:
		x.badOp()
	}
	return nil
}

// ---- Semaphore and BoundedSemaphore ----

// semObj is a counting semaphore. A BoundedSemaphore also counts the
// units each session holds (acquired and not released), and gives them
// back when the session ends.
type semObj struct {
	mu      sync.Mutex
	value   int
	bound   int
	bounded bool
	held    map[*session]*semHeld
	spare   *semHeld // the last one freed, to use again
	waiters []*waiter
	gone    gone
}

// semHeld counts the units a session holds, and is the semaphore in the
// session's record while it holds some.
type semHeld struct {
	n int
	holding
}

// took counts a unit that sess acquired. Called with mu held.
func (s *semObj) took(sess *session) {
	if !s.bounded {
		return
	}
	h := s.held[sess]
	if h == nil {
		if h, s.spare = s.spare, nil; h == nil {
			h = &semHeld{holding: holding{h: s}}
		}
		s.held[sess] = h
		sess.hold(&h.holding)
	}
	h.n++
}

// untook uncounts n units of sess's, as many as it holds. Called with mu
// held.
func (s *semObj) untook(sess *session, n int64) {
	h := s.held[sess]
	if h == nil {
		return
	}
	if h.n -= int(min(n, int64(h.n))); h.n == 0 {
		delete(s.held, sess)
		sess.unhold(&h.holding)
		s.spare = h
	}
}

// give adds a unit, or hands it to the longest waiter.
func (s *semObj) give() {
	if len(s.waiters) > 0 {
		var w *waiter
		w, s.waiters = popWaiter(s.waiters)
		s.took(w.sess)
		w.grant()
		return
	}
	s.value++
}

// sessionGone gives back the units sess holds, to the waiters first; a
// semaphore freed meanwhile keeps them, as its waiters have been told it
// is gone.
func (s *semObj) sessionGone(sess *session) {
	if !s.bounded {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[sess]
	if h == nil {
		return
	}
	delete(s.held, sess)
	sess.unhold(&h.holding)
	if s.gone.isClosed() {
		return // freed: its waiters have been told it is gone
	}
	n := h.n
	for ; n > 0 && s.value < s.bound; n-- {
		s.give()
		sess.gave.semUnits.Add(1)
	}
}

func (s *semObj) free() ([][]byte, []uint64) {
	s.gone.close()
	return nil, nil
}

func (s *semObj) handle(x *call) waitFn {
	r := x.r
	sess := x.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	switch x.op {
	case opSemAcquire, opSemTryAcquire:
		if s.value > 0 {
			s.value--
			s.took(sess)
			r.ok()
			r.bool(true)
			return nil
		}
		if x.op == opSemTryAcquire {
			r.ok()
			r.bool(false)
			return nil
		}
		w := newWaiter(sess)
		s.waiters = append(s.waiters, w)
		return func(p *pending, r *reply) {
			w.wait(p.cancel, &s.gone)
			s.mu.Lock()
			defer s.mu.Unlock()
			switch {
			case !w.granted:
				s.waiters = removeWaiter(s.waiters, w)
				endWait(r, &s.gone)
			case p.isDead():
				s.untook(sess, 1)
				s.give()
				cancelled(r)
			default:
				r.ok()
				r.bool(true)
			}
		}
	case opSemRelease:
		// Go clients release one unit; Python's release(n) sends n, which
		// is released as one operation: all n units or none, without a
		// step per unit (n is the client's, up to 2^63-1).
		n := int64(1)
		if len(x.args) > 0 {
			if !x.need(1) {
				return nil
			}
			var ok bool
			if n, ok = x.int(0); !ok {
				return nil
			}
			if n < 1 {
				r.fail(codeBadArgs, "manager: a semaphore releases one unit or more")
				return nil
			}
		}
		if s.bounded && n > int64(s.bound-s.value) {
			r.fail(codeTooManyReleases, "manager: BoundedSemaphore released too many times")
			return nil
		}
		// Units handed to waiters do not raise the value.
		if n-int64(len(s.waiters)) > int64(mp.MaxSemaphoreValue-s.value) {
			r.fail(codeTooManyReleases, "manager: Semaphore released past its maximum value")
			return nil
		}
		for ; n > 0 && len(s.waiters) > 0; n-- {
			s.untook(sess, 1)
			s.give()
		}
		s.untook(sess, n)
		s.value += int(n)
		r.ok()
	case opSemValue:
		r.ok()
		r.int(s.value)
	default:
		x.badOp()
	}
	return nil
}

// ---- Event ----

type eventObj struct {
	mu      sync.Mutex
	set     bool
	waiters []*waiter
	gone    gone
}

func (e *eventObj) free() ([][]byte, []uint64) {
	e.gone.close()
	return nil, nil
}

func (e *eventObj) handle(x *call) waitFn {
	r := x.r
	e.mu.Lock()
	defer e.mu.Unlock()
	switch x.op {
	case opEventSet:
		e.set = true
		for _, w := range e.waiters {
			w.grant()
		}
		e.waiters = nil
		r.ok()
	case opEventClear:
		e.set = false
		r.ok()
	case opEventIsSet:
		r.ok()
		r.bool(e.set)
	case opEventWait:
		if e.set {
			r.ok()
			return nil
		}
		w := newWaiter(x.sess)
		e.waiters = append(e.waiters, w)
		return awaitSignal(w, &e.mu, &e.waiters, &e.gone)
	default:
		x.badOp()
	}
	return nil
}

func (g *gone) isClosed() bool { return ended(g.ch) }

// ---- Condition ----

// condObj is a condition variable on a Lock or RLock of the same server
// (its own RLock when made without one). Its proxy's Acquire and Release
// act on that lock.
type condObj struct {
	mu      sync.Mutex // after lock.mu
	lock    *lockObj
	lockID  uint64 // the lock's object, when it is one
	waiters []*waiter
	gone    gone
}

func (c *condObj) free() ([][]byte, []uint64) {
	c.gone.close()
	if c.lockID == 0 {
		c.lock.free()
		return nil, nil
	}
	return nil, []uint64{c.lockID}
}

func (c *condObj) handle(x *call) waitFn {
	switch x.op {
	case opLockAcquire, opLockTryAcquire, opLockRelease, opLockLocked, opLockHeld:
		return c.lock.handle(x)
	case opCondWait:
		return c.wait(x)
	case opCondNotify:
		return c.notify(x)
	}
	x.badOp()
	return nil
}

// wait serves Wait: [gid]. It releases the lock, waits for a notification
// (or a cancel), and takes the lock back as it was, whatever happened,
// unless the connection ends.
func (c *condObj) wait(x *call) waitFn {
	r := x.r
	if !x.need(1) {
		return nil
	}
	gid, _, err := codec.ReadUint(x.args[0])
	if err != nil {
		r.fail(codeProtocol, "manager: bad goroutine id")
		return nil
	}
	sess := x.sess
	l := c.lock
	w, depth, ok := c.enterWait(sess, gid)
	if !ok {
		r.fail(codeNotHeld, "manager: Condition.Wait without holding its lock")
		return nil
	}
	return func(p *pending, r *reply) {
		w.wait(p.cancel, &c.gone)
		c.mu.Lock()
		notified := w.granted
		if !notified {
			c.waiters = removeWaiter(c.waiters, w)
		}
		c.mu.Unlock()
		// Take the lock back; only the end of the connection stops that.
		l.mu.Lock()
		ok, died := l.take(sess, gid, depth)
		var lw *waiter
		if !ok {
			lw = l.enqueue(sess, gid, depth)
		}
		l.mu.Unlock()
		if lw != nil {
			if !l.await(lw, p.dead, p, r) {
				return
			}
			died = lw.ownerDied
		} else if p.isDead() {
			l.mu.Lock()
			if l.owned(sess, gid) {
				l.handoff()
			}
			l.mu.Unlock()
			cancelled(r)
			return
		}
		switch {
		case died != 0:
			acquired(r, died)
		case c.gone.isClosed():
			noObject(r)
		case !notified:
			cancelled(r)
		default:
			r.ok()
		}
	}
}

// enterWait queues a waiter of sess's for a notification and releases the
// lock, if sess (goroutine gid) holds it; it returns the waiter and the
// depth at which the lock was held, or false if sess does not hold it.
// The lock's mutex is released in a defer (see withLock).
func (c *condObj) enterWait(sess *session, gid uint64) (w *waiter, depth int, ok bool) {
	l := c.lock
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.owned(sess, gid) {
		return nil, 0, false
	}
	w = newWaiter(sess)
	c.mu.Lock()
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	depth = l.depth
	l.handoff()
	return w, depth, true
}

// notify serves Notify: [gid, n]; n < 0 wakes every waiter.
func (c *condObj) notify(x *call) waitFn {
	r := x.r
	if !x.need(2) {
		return nil
	}
	gid, _, err := codec.ReadUint(x.args[0])
	n, err2 := codec.ReadInt(x.args[1])
	if err != nil || err2 != nil {
		r.fail(codeProtocol, "manager: bad notify arguments")
		return nil
	}
	l := c.lock
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.owned(x.sess, gid) {
		r.fail(codeNotHeld, "manager: Condition.Notify without holding its lock")
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; n != 0 && len(c.waiters) > 0; n-- {
		var w *waiter
		w, c.waiters = popWaiter(c.waiters)
		w.grant()
	}
	r.ok()
	return nil
}

// ---- Barrier ----

// Barrier states, as in Python's threading.Barrier.
const (
	barrierFilling   = 0
	barrierDraining  = 1
	barrierResetting = -1
	barrierBroken    = -2
)

// barrierObj follows Python's threading.Barrier; changed is closed (and
// replaced) at every change of state, waking the waiters to look.
type barrierObj struct {
	mu      sync.Mutex
	parties int
	timeout time.Duration
	state   int
	count   int
	changed chan struct{}
	gone    gone
}

func (b *barrierObj) free() ([][]byte, []uint64) {
	b.gone.close()
	return nil, nil
}

func (b *barrierObj) notifyAll() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *barrierObj) handle(x *call) waitFn {
	r := x.r
	b.mu.Lock()
	defer b.mu.Unlock()
	switch x.op {
	case opBarrierWait:
		return b.wait
	case opBarrierReset:
		if b.count > 0 {
			if b.state == barrierFilling || b.state == barrierBroken {
				b.state = barrierResetting
			}
		} else {
			b.state = barrierFilling
		}
		b.notifyAll()
		r.ok()
	case opBarrierAbort:
		b.state = barrierBroken
		b.notifyAll()
		r.ok()
	case opBarrierInfo:
		r.ok()
		r.int(b.parties)
		if b.state == barrierFilling {
			r.int(b.count)
		} else {
			r.int(0)
		}
		r.bool(b.state == barrierBroken)
	default:
		x.badOp()
	}
	return nil
}

// wait serves Wait, in its own goroutine from the start.
func (b *barrierObj) wait(p *pending, r *reply) {
	var timeout <-chan time.Time
	if b.timeout > 0 {
		t := time.NewTimer(b.timeout)
		defer t.Stop()
		timeout = t.C
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// await a change of state; it reports why it stopped waiting.
	await := func() (stop int) {
		ch := b.changed
		b.mu.Unlock()
		defer b.mu.Lock()
		select {
		case <-ch:
			return 0
		case <-p.cancel:
			return 1
		case <-timeout:
			return 2
		case <-b.gone.done():
			return 3
		}
	}
	// Wait while the previous opening drains or a reset completes.
	for b.state == barrierDraining || b.state == barrierResetting {
		switch await() {
		case 1, 2:
			cancelled(r)
			return
		case 3:
			noObject(r)
			return
		}
	}
	if b.state == barrierBroken {
		r.fail(codeBroken, "manager: broken barrier")
		return
	}
	index := b.count
	b.count++
	defer func() {
		// Python's _exit: the last to leave resets a drained barrier.
		b.count--
		if b.count == 0 && (b.state == barrierResetting || b.state == barrierDraining) {
			b.state = barrierFilling
			b.notifyAll()
		}
	}()
	if index+1 == b.parties {
		b.state = barrierDraining
		b.notifyAll()
		r.ok()
		r.int(index)
		return
	}
	for b.state == barrierFilling {
		switch await() {
		case 1:
			b.state = barrierBroken
			b.notifyAll()
			r.fail(codeBroken, "manager: broken barrier (wait cancelled)", "cancel")
			return
		case 2:
			b.state = barrierBroken
			b.notifyAll()
			r.fail(codeTimeout, "manager: broken barrier (wait timed out)")
			return
		case 3:
			noObject(r)
			return
		}
	}
	if b.state < 0 {
		r.fail(codeBroken, "manager: broken barrier")
		return
	}
	r.ok()
	r.int(index)
}

// ---- Queue and JoinableQueue ----

// queueObj is a FIFO of encoded items. Get hands items to waiting getters
// in order; a bounded queue keeps putters waiting in order, with their
// items.
type queueObj struct {
	mu         sync.Mutex
	items      [][]byte
	head       int // items[head:] are queued
	maxsize    int
	joinable   bool
	unfinished int
	getters    []*waiter
	putters    []*waiter
	joiners    []*waiter
	gone       gone
}

func (q *queueObj) size() int { return len(q.items) - q.head }

func (q *queueObj) push(it []byte) {
	if q.head > 32 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
}

func (q *queueObj) pop() []byte {
	it := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return it
}

// enter puts an item into the queue, or into the hands of a getter.
func (q *queueObj) enter(it []byte) {
	q.unfinished++
	if len(q.getters) > 0 {
		var w *waiter
		w, q.getters = popWaiter(q.getters)
		w.item = it
		w.grant()
		return
	}
	q.push(it)
}

// putBack returns an item that a getter took but never received to the
// front of the queue, or to the longest-waiting getter; it still counts as
// unfinished. It reports false, leaving the item to the caller, if the
// queue has been freed. Called with mu held.
func (q *queueObj) putBack(it []byte) bool {
	if q.gone.isClosed() {
		return false
	}
	if len(q.getters) > 0 {
		var w *waiter
		w, q.getters = popWaiter(q.getters)
		w.item = it
		w.grant()
		return true
	}
	q.items = append(q.items[:q.head], append([][]byte{it}, q.items[q.head:]...)...)
	return true
}

// A delivery is an item that a Get took from a queue and sent to a client
// that has not acknowledged it yet. The proxy acknowledges it just before
// its Get returns; if the connection ends first, the item goes back to the
// front of its queue (see Queue for the guarantee this gives).
type delivery struct {
	q  *queueObj
	it []byte
}

// deliver records that it, taken from q, is being sent on c; the
// connection's previous delivery was acknowledged before this request was
// served.
func (c *sconn) deliver(q *queueObj, it []byte) {
	c.pmu.Lock()
	c.unacked = delivery{q, it}
	c.pmu.Unlock()
}

// settle takes c's delivery away, to settle it.
func (c *sconn) settle() delivery {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	d := c.unacked
	c.unacked = delivery{}
	return d
}

// acked makes the item sent on c, if any, the client's: it leaves the
// server, with the references its tokens held.
func (c *sconn) acked() {
	if d := c.settle(); d.q != nil && mayHoldTokens(d.it) {
		c.s.dropped([][]byte{d.it})
	}
}

// undeliver puts the item sent on c and never acknowledged back into its
// queue: the connection has ended.
func (c *sconn) undeliver() {
	d := c.settle()
	if d.q == nil {
		return
	}
	var back bool
	withLock(&d.q.mu, func() { back = d.q.putBack(d.it) })
	if back {
		c.sess.gave.queueItems.Add(1)
	} else if mayHoldTokens(d.it) {
		c.s.dropped([][]byte{d.it})
	}
}

// refill lets the longest-waiting putter in after a Get made room.
func (q *queueObj) refill() {
	if len(q.putters) > 0 && (q.maxsize == 0 || q.size() < q.maxsize) {
		var w *waiter
		w, q.putters = popWaiter(q.putters)
		q.enter(w.item)
		w.grant()
	}
}

func (q *queueObj) free() ([][]byte, []uint64) {
	q.gone.close()
	q.mu.Lock()
	defer q.mu.Unlock()
	vals := q.items[q.head:]
	for _, w := range q.putters {
		vals = append(vals, w.item)
	}
	q.items, q.head, q.putters = nil, 0, nil
	return vals, nil
}

func (q *queueObj) handle(x *call) waitFn {
	r := x.r
	q.mu.Lock()
	defer q.mu.Unlock()
	switch x.op {
	case opQueuePut, opQueueTryPut:
		if !x.need(1) {
			return nil
		}
		x.s.stored(x.args[0])
		it := bytes.Clone(x.args[0])
		if len(q.getters) > 0 || q.maxsize == 0 || q.size() < q.maxsize {
			q.enter(it)
			r.ok()
			return nil
		}
		if x.op == opQueueTryPut {
			r.drop(it)
			r.fail(codeFull, "manager: queue is full")
			return nil
		}
		w := newWaiter(x.sess)
		w.item = it
		q.putters = append(q.putters, w)
		return func(p *pending, r *reply) {
			w.wait(p.cancel, &q.gone)
			q.mu.Lock()
			defer q.mu.Unlock()
			switch {
			case w.granted:
				r.ok() // the item is in, even if the client is gone
			case q.gone.isClosed():
				noObject(r)
			default:
				q.putters = removeWaiter(q.putters, w)
				r.drop(w.item)
				cancelled(r)
			}
		}
	case opQueueGet, opQueueTryGet:
		c := x.c
		if q.size() > 0 {
			it := q.pop()
			q.refill()
			r.ok()
			r.value(it)
			c.deliver(q, it)
			return nil
		}
		if x.op == opQueueTryGet {
			r.fail(codeEmpty, "manager: queue is empty")
			return nil
		}
		w := newWaiter(x.sess)
		q.getters = append(q.getters, w)
		return func(p *pending, r *reply) {
			w.wait(p.cancel, &q.gone)
			q.mu.Lock()
			defer q.mu.Unlock()
			switch {
			case w.granted && p.isDead():
				// Nobody will receive the item.
				if !q.putBack(w.item) {
					r.drop(w.item)
				}
				cancelled(r)
			case w.granted:
				r.ok()
				r.value(w.item)
				c.deliver(q, w.item)
			case q.gone.isClosed():
				noObject(r)
			default:
				q.getters = removeWaiter(q.getters, w)
				cancelled(r)
			}
		}
	case opQueueSize:
		r.ok()
		r.int(q.size())
	case opQueueFull:
		r.ok()
		r.bool(q.maxsize > 0 && q.size() >= q.maxsize)
	case opQueueTaskDone:
		if !q.joinable {
			x.badOp()
			return nil
		}
		if q.unfinished <= 0 {
			r.fail(codeTaskDone, "manager: TaskDone called more times than items were put")
			return nil
		}
		q.unfinished--
		if q.unfinished == 0 {
			for _, w := range q.joiners {
				w.grant()
			}
			q.joiners = nil
		}
		r.ok()
	case opQueueJoin:
		if !q.joinable {
			x.badOp()
			return nil
		}
		if q.unfinished == 0 {
			r.ok()
			return nil
		}
		w := newWaiter(x.sess)
		q.joiners = append(q.joiners, w)
		return awaitSignal(w, &q.mu, &q.joiners, &q.gone)
	default:
		x.badOp()
	}
	return nil
}

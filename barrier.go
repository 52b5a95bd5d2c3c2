//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/shm"
)

// ErrBrokenBarrier is returned by Barrier.Wait when the barrier is broken
// or is reset while the caller waits (Python's BrokenBarrierError).
var ErrBrokenBarrier = errors.New("mp: broken barrier")

// Limits of a Barrier.
const (
	MaxBarrierParties    = 1 << 16
	maxBarrierActionName = 232
)

// Barrier makes a fixed number of parties wait for each other, like
// Python's multiprocessing.Barrier: each Wait blocks until parties Waits
// are under way, then all of them return, each with its own arrival index
// in 0..parties-1, and the barrier can be used again. Parties may be
// goroutines of any processes that have it; pass it to children as (part
// of) an argument.
//
// It follows Python's threading.Barrier: while the parties of one opening
// leave it, new arrivals wait for them to be gone; Reset wakes the parties
// waiting with ErrBrokenBarrier and makes the barrier usable again once
// they have left; Abort, a Wait that times out, or an action that fails
// breaks it: every Wait, present and future, returns ErrBrokenBarrier
// until Reset.
//
// A process that dies while it waits at the barrier breaks it: the other
// waiters check now and then (after 10 ms, then at most every 100 ms)
// whether the processes of the parties are alive, and return
// ErrBrokenBarrier when one is not. A party that dies before it arrives
// cannot be told from one that is late: give the barrier (or the waits) a
// timeout where that may happen.
type Barrier struct {
	s        shared
	m        mutex
	st       *atomic.Uint32 // state and change count; waiters sleep on it
	sleepers *atomic.Uint32
	count    *atomic.Uint32
	parties  int
	timeout  time.Duration
	action   string
}

// The state of a Barrier (the mutex guards all of it):
//
//	0   mutex
//	8   st       uint32: changes<<2 | state; every change wakes the sleepers
//	12  sleepers uint32
//	16  count    uint32: parties inside Wait (Python's _count)
//	20  the length of the action's name, uint32
//	24  the action's name
//	256 parties slots of uint64: the process (shm.Self) of the party with
//	    that arrival index while it is inside Wait, else 0
//
// Header parameters: 0 parties, 1 the default timeout in nanoseconds.
const (
	barrierNameOff  = 24
	barrierSlotsOff = 256
)

// Barrier states, as in Python.
const (
	barrierFilling   = 0
	barrierDraining  = 1
	barrierResetting = 2
	barrierBroken    = 3
)

// NewBarrier returns a Barrier for parties parties (1 ≤ parties ≤
// MaxBarrierParties). If action is not nil, the last party to arrive runs
// it in its own process (through the registered target, so every process
// that uses the barrier must have it registered: the same binary does)
// before the parties are released; it runs once per opening. If the
// action fails or panics, the barrier breaks: that party's Wait returns
// the action's error, the others ErrBrokenBarrier. A timeout above zero
// is the default limit of each Wait (the earlier of it and the ctx's
// deadline holds); zero means none.
func NewBarrier(parties int, action *Func[struct{}, struct{}], timeout time.Duration) (*Barrier, error) {
	if parties < 1 || parties > MaxBarrierParties {
		return nil, fmt.Errorf("mp: barrier parties %d out of range [1, %d]", parties, MaxBarrierParties)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("mp: negative barrier timeout %v", timeout)
	}
	var name string
	if action != nil {
		name = action.Name()
		if len(name) > maxBarrierActionName {
			return nil, fmt.Errorf("mp: barrier action name %q longer than %d bytes", name, maxBarrierActionName)
		}
		if _, ok := lookup(name); !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownTarget, name)
		}
	}
	s, err := newShared(kindBarrier, barrierSlotsOff+8*parties)
	if err != nil {
		return nil, err
	}
	s.param(0).Store(uint64(parties))
	s.param(1).Store(uint64(timeout))
	s.u32(20).Store(uint32(len(name)))
	copy(s.seg.Bytes()[headerSize+barrierNameOff:], name)
	b := &Barrier{}
	if err := b.init(s); err != nil {
		s.release()
		return nil, err
	}
	return b, nil
}

func (b *Barrier) init(s shared) error {
	parties := s.param(0).Load()
	timeout := s.param(1).Load()
	n := s.u32(20).Load()
	if parties < 1 || parties > MaxBarrierParties || timeout > 1<<63-1 || n > maxBarrierActionName ||
		len(s.seg.Bytes()) < headerSize+barrierSlotsOff+8*int(parties) {
		return errors.New("mp: malformed shared Barrier")
	}
	off := headerSize + barrierNameOff
	*b = Barrier{s: s, m: newMutex(s, 0), st: s.u32(8), sleepers: s.u32(12), count: s.u32(16),
		parties: int(parties), timeout: time.Duration(timeout),
		action: string(s.seg.Bytes()[off : off+int(n)])}
	autoRelease(b, s)
	return nil
}

func (b *Barrier) slot(i int) *atomic.Uint64 { return b.s.u64(barrierSlotsOff + 8*i) }

// Parties returns the number of parties the barrier waits for.
func (b *Barrier) Parties() int { return b.parties }

// NWaiting returns how many parties wait at the barrier now (0 while it
// drains, resets or is broken).
func (b *Barrier) NWaiting() int {
	if b.st == nil {
		return 0
	}
	n := 0
	if b.st.Load()&3 == barrierFilling {
		n = int(b.count.Load())
	}
	runtime.KeepAlive(b)
	return n
}

// Broken reports whether the barrier is broken.
func (b *Barrier) Broken() bool {
	broken := b.st != nil && b.st.Load()&3 == barrierBroken
	runtime.KeepAlive(b)
	return broken
}

// Wait waits until all parties have called Wait, and returns the caller's
// arrival index, 0 for the first to arrive and Parties()-1 for the last.
//
// It returns ErrBrokenBarrier if the barrier is broken, or breaks or is
// reset while the caller waits. If the wait for the others outlasts ctx
// (or the barrier's timeout), Wait breaks the barrier and returns an
// error that is both ErrBrokenBarrier and ctx.Err() (or
// context.DeadlineExceeded). While the previous opening drains (or an
// action runs), an arriving Wait waits for that to end; if ctx ends then,
// it returns ctx.Err() and does not break the barrier, since it has not
// arrived. The last party runs the action, if any, and returns its error
// if it fails.
func (b *Barrier) Wait(ctx context.Context) (int, error) {
	if b.st == nil {
		return -1, ErrClosed
	}
	defer runtime.KeepAlive(b)
	me := shm.Self()
	var deadline time.Time
	if b.timeout > 0 {
		deadline = time.Now().Add(b.timeout)
	}
	if err := b.lock(ctx); err != nil {
		return -1, err
	}
	// Wait while the barrier drains or resets.
	for {
		w := b.st.Load()
		if state := w & 3; state != barrierDraining && state != barrierResetting {
			if state == barrierBroken {
				b.m.unlock()
				return -1, ErrBrokenBarrier
			}
			break
		}
		b.m.unlock()
		err := b.waitChange(ctx, deadline, w, me)
		if errors.Is(err, errPartyDied) {
			err = nil
		}
		if err != nil {
			return -1, err
		}
		if err := b.lock(ctx); err != nil {
			return -1, err
		}
	}
	index := int(b.count.Load())
	if index >= b.parties {
		// Only memory written by something else than mp gets here.
		b.setState(barrierBroken)
		b.m.unlock()
		return -1, ErrBrokenBarrier
	}
	b.count.Store(uint32(index + 1))
	b.slot(index).Store(me)
	var err error
	if index+1 == b.parties {
		err = b.open()
	} else {
		err = b.waitOpen(ctx, deadline, me)
	}
	b.slot(index).Store(0)
	b.count.Add(^uint32(0))
	b.exit()
	b.m.unlock()
	if err != nil {
		return -1, err
	}
	return index, nil
}

// open runs the action and releases the parties (mutex held).
func (b *Barrier) open() error {
	if b.action != "" {
		if _, err := callLocal(b.action, nil); err != nil {
			b.setState(barrierBroken)
			return fmt.Errorf("mp: barrier action %s: %w", b.action, err)
		}
	}
	b.setState(barrierDraining)
	return nil
}

// waitOpen waits, with the mutex held on entry and return, until the
// barrier leaves the filling state.
func (b *Barrier) waitOpen(ctx context.Context, deadline time.Time, me uint64) error {
	for {
		w := b.st.Load()
		switch w & 3 {
		case barrierDraining:
			return nil
		case barrierResetting, barrierBroken:
			return ErrBrokenBarrier
		}
		b.m.unlock()
		err := b.waitChange(ctx, deadline, w, me)
		// Take the mutex back whatever happened: this party must leave.
		b.lock(context.Background())
		switch {
		case err == nil, errors.Is(err, errPartyDied):
		case b.st.Load()&3 == barrierFilling:
			b.setState(barrierBroken)
			return fmt.Errorf("%w: %w", ErrBrokenBarrier, err)
		}
	}
}

// exit ends a drain or reset when the last party has left (mutex held).
func (b *Barrier) exit() {
	if b.count.Load() == 0 {
		if state := b.st.Load() & 3; state == barrierDraining || state == barrierResetting {
			b.setState(barrierFilling)
		}
	}
}

// setState changes the state (or, to the same state, only notifies) and
// wakes every sleeper (mutex held).
func (b *Barrier) setState(state uint32) {
	w := b.st.Load()
	b.st.Store((w&^3 + 4) | state)
	if b.sleepers.Load() > 0 {
		futex.WakeAll(b.st)
	}
}

// errPartyDied reports from waitChange that a party's process, or the
// mutex's holder, died; the caller takes the mutex and sweeps.
var errPartyDied = errors.New("mp: barrier party died")

// waitChange waits, without the mutex, until st is no longer w. Now and
// then it checks that the parties and the mutex's holder are alive; when
// one is not, it takes the mutex, sweeps the dead parties out (which
// breaks a filling barrier) and returns errPartyDied.
func (b *Barrier) waitChange(ctx context.Context, deadline time.Time, w uint32, me uint64) error {
	if ctx.Err() == nil && spin(func() bool { return b.st.Load() != w }) {
		return nil
	}
	s := newSleeper(ctx, b.st)
	defer s.done()
	if !deadline.IsZero() && (s.deadline.IsZero() || deadline.Before(s.deadline)) {
		s.deadline = deadline
	}
	b.sleepers.Add(1)
	defer b.sleepers.Add(^uint32(0))
	interval := firstOwnerCheck
	lastCheck := time.Now()
	for b.st.Load() == w {
		if err := s.sleep(b.st, w, interval); err != nil {
			if b.st.Load() != w {
				return nil
			}
			return err
		}
		if time.Since(lastCheck) < interval {
			continue
		}
		lastCheck = time.Now()
		interval = min(2*interval, maxOwnerCheck)
		if b.someoneDied(me) {
			b.lock(context.Background())
			b.sweep(me)
			b.m.unlock()
			return errPartyDied
		}
	}
	return nil
}

// someoneDied reports whether a party's process or the mutex's holder is
// dead, without the mutex.
func (b *Barrier) someoneDied(me uint64) bool {
	known := map[uint64]bool{me: true}
	alive := func(o uint64) bool {
		a, ok := known[o]
		if !ok {
			a = shm.Alive(o)
			known[o] = a
		}
		return a
	}
	if o := b.m.owner(); o != 0 && !alive(o) {
		return true
	}
	for i := range b.parties {
		if o := b.slot(i).Load(); o != 0 && !alive(o) {
			return true
		}
	}
	return false
}

// lock takes the mutex. If its holder died, the state may be half
// updated: the dead parties are swept out, the count is recomputed from
// the slots, and the barrier is broken.
func (b *Barrier) lock(ctx context.Context) error {
	dead, err := b.m.lock(ctx, shm.Self())
	if err != nil {
		return err
	}
	if dead != 0 {
		b.sweep(shm.Self())
		n := uint32(0)
		for i := range b.parties {
			if b.slot(i).Load() != 0 {
				n++
			}
		}
		b.count.Store(n)
		b.setState(barrierBroken)
		b.exit()
	}
	return nil
}

// sweep removes the parties whose process died (mutex held). A dead party
// breaks a filling barrier; during a drain or reset it counts as gone.
func (b *Barrier) sweep(me uint64) {
	found := false
	known := map[uint64]bool{me: true}
	for i := range b.parties {
		o := b.slot(i).Load()
		if o == 0 {
			continue
		}
		a, ok := known[o]
		if !ok {
			a = shm.Alive(o)
			known[o] = a
		}
		if !a {
			b.slot(i).Store(0)
			b.count.Add(^uint32(0))
			found = true
		}
	}
	if !found {
		return
	}
	if b.st.Load()&3 == barrierFilling {
		b.setState(barrierBroken)
	}
	b.exit()
}

// Reset returns the barrier to its initial, empty state. Parties waiting
// at it return ErrBrokenBarrier; the barrier is usable again once they
// have left (new arrivals wait for that).
func (b *Barrier) Reset() error {
	if b.st == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(b)
	b.lock(context.Background())
	b.sweep(shm.Self())
	if b.count.Load() > 0 {
		if state := b.st.Load() & 3; state == barrierFilling || state == barrierBroken {
			b.setState(barrierResetting)
		} else {
			b.setState(state)
		}
	} else {
		b.setState(barrierFilling)
	}
	b.m.unlock()
	return nil
}

// Abort breaks the barrier: parties waiting at it, and every Wait after,
// return ErrBrokenBarrier until Reset.
func (b *Barrier) Abort() error {
	if b.st == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(b)
	b.lock(context.Background())
	b.setState(barrierBroken)
	b.m.unlock()
	return nil
}

// MarshalCBOR lets a Barrier travel to another process inside a message.
func (b *Barrier) MarshalCBOR() ([]byte, error) {
	if b.st == nil {
		return nil, ErrClosed
	}
	return b.s.marshal()
}

// UnmarshalCBOR receives a Barrier sent by mp.
func (b *Barrier) UnmarshalCBOR(data []byte) error {
	s, err := unmarshalShared(data, kindBarrier)
	if err != nil {
		return err
	}
	if err := b.init(s); err != nil {
		s.release()
		return err
	}
	return nil
}

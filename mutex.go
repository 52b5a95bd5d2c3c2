//go:build linux

package mp

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/pause"
	"github.com/go-mp/mp/internal/shm"
)

// mutex is the robust lock under Lock, RLock and the other objects that
// need one. Its 64-bit word holds the owner (see shm.Self) or 0 when free;
// bit 31 says that someone may be sleeping on the low half of the word.
//
// A waiter that sleeps checks now and then whether the owner is still
// alive; if it died holding the lock, the waiter takes the lock over and is
// told so. No one waits forever on a dead owner.
type mutex struct {
	word *atomic.Uint64
	low  *atomic.Uint32 // the low half of word, where sleepers sleep
	// hb makes each unlock happen before the next lock in the eyes of the
	// race detector, which cannot see synchronisation through shared
	// memory. It is used only in race-enabled builds.
	hb *atomic.Uint64
}

const waitersBit = 1 << 31

// First and longest sleep between checks that the owner is alive.
const (
	firstOwnerCheck = 10 * time.Millisecond
	maxOwnerCheck   = 100 * time.Millisecond
)

func newMutex(s shared, off int) mutex {
	return mutex{word: s.u64(off), low: s.u32(off), hb: new(atomic.Uint64)}
}

func (m mutex) tryLock(me uint64) bool {
	if m.word.CompareAndSwap(0, me) {
		m.raceAcquire()
		return true
	}
	return false
}

// raceAcquire pairs with the hb update in unlock for the race detector.
func (m mutex) raceAcquire() {
	if raceEnabled {
		m.hb.Load()
	}
}

// owner returns the owner word without the waiters bit, 0 when free.
func (m mutex) owner() uint64 { return m.word.Load() &^ waitersBit }

// lock takes the lock for me. ownerDied reports that the previous owner
// died holding it (the lock is taken all the same). On error (ctx done) the
// lock is not taken.
func (m mutex) lock(ctx context.Context, me uint64) (ownerDied uint64, err error) {
	return m.lockOr(ctx, me, nil)
}

// lockOr is lock that also gives up, with ErrClosed, once abort (when not
// nil) returns true after a wake-up on the mutex's word.
func (m mutex) lockOr(ctx context.Context, me uint64, abort func() bool) (ownerDied uint64, err error) {
	ownerDied, err = m.take(ctx, me, abort)
	if err == nil {
		m.raceAcquire()
	}
	return ownerDied, err
}

func (m mutex) take(ctx context.Context, me uint64, abort func() bool) (ownerDied uint64, err error) {
	if m.word.CompareAndSwap(0, me) {
		return 0, nil
	}
	if m.spin(me) {
		return 0, nil
	}
	s := newSleeper(ctx, m.low)
	defer s.done()
	interval := firstOwnerCheck
	lastCheck := time.Now()
	for {
		v := m.word.Load()
		if v == 0 {
			// Others may be asleep: keep the bit so that unlock wakes one.
			if m.word.CompareAndSwap(0, me|waitersBit) {
				return 0, nil
			}
			continue
		}
		if v&waitersBit == 0 {
			if !m.word.CompareAndSwap(v, v|waitersBit) {
				continue
			}
			v |= waitersBit
		}
		err := s.sleep(m.low, uint32(v), interval)
		if err == nil && abort != nil && abort() {
			err = ErrClosed
		}
		if err != nil {
			// We may have taken the wake-up meant for the next owner:
			// pass it on if the lock is free.
			if m.word.Load() == 0 {
				futex.Wake(m.low, 1)
			}
			return 0, err
		}
		if time.Since(lastCheck) < interval {
			continue
		}
		lastCheck = time.Now()
		interval = min(2*interval, maxOwnerCheck)
		cur := m.word.Load()
		if cur != 0 && cur&^waitersBit == v&^waitersBit && !shm.Alive(cur&^waitersBit) {
			if m.word.CompareAndSwap(cur, me|waitersBit) {
				return cur &^ waitersBit, nil
			}
		}
	}
}

// maxBackoff is the most spin-wait hints between two looks at a busy
// lock's word while spinning.
const maxBackoff = 256

// spin tries to take the lock for up to spinTime without sleeping. Between
// looks it backs off more and more, so that the holder keeps the word's
// cache line while it works.
func (m mutex) spin(me uint64) bool {
	backoff := 1
	return spin(func() bool {
		pause.N(backoff)
		backoff = min(2*backoff, maxBackoff)
		return m.word.Load() == 0 && m.word.CompareAndSwap(0, me)
	})
}

// unlock frees the lock and reports whether it was held.
func (m mutex) unlock() bool {
	if raceEnabled {
		m.hb.Add(1)
	}
	old := m.word.Swap(0)
	if old&waitersBit != 0 {
		futex.Wake(m.low, 1)
	}
	return old != 0
}

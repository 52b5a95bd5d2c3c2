//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/go-mp/mp/internal/futex"
)

// ErrReleasedTooManyTimes is returned by Release of a BoundedSemaphore that
// would rise above its initial value (Python's ValueError), and of a
// Semaphore whose value would pass MaxSemaphoreValue.
var ErrReleasedTooManyTimes = errors.New("mp: semaphore released too many times")

// MaxSemaphoreValue is the largest value a Semaphore can hold.
const MaxSemaphoreValue = 1<<31 - 1

// A semaphore's state is its value, a futex word, and the number of
// goroutines asleep on it, so that Release makes no system call when no one
// sleeps:
//
//	0 value    uint32
//	4 sleepers uint32
//
// Header parameters: 0 the initial value, 1 whether it is bounded.
//
// A process that dies asleep leaves the sleepers count too high; that
// costs later Releases a wake-up call each, nothing worse.
type sem struct {
	s        shared
	value    *atomic.Uint32
	sleepers *atomic.Uint32
	bound    uint32 // the initial value
	bounded  bool
}

func newSem(value int, bounded bool) (sem, error) {
	if value < 0 || value > MaxSemaphoreValue {
		return sem{}, fmt.Errorf("mp: semaphore initial value %d out of range [0, %d]", value, MaxSemaphoreValue)
	}
	s, err := newShared(kindSemaphore, 8)
	if err != nil {
		return sem{}, err
	}
	s.param(0).Store(uint64(value))
	if bounded {
		s.param(1).Store(1)
	}
	s.u32(0).Store(uint32(value))
	return semOn(s), nil
}

func semOn(s shared) sem {
	return sem{s: s, value: s.u32(0), sleepers: s.u32(4),
		bound: uint32(s.param(0).Load()), bounded: s.param(1).Load() != 0}
}

func unmarshalSem(data []byte, bounded bool) (sem, error) {
	s, err := unmarshalShared(data, kindSemaphore)
	if err != nil {
		return sem{}, err
	}
	m := semOn(s)
	if m.bounded != bounded || m.bound > MaxSemaphoreValue {
		s.release()
		if bounded {
			return sem{}, errors.New("mp: a Semaphore arrived where a BoundedSemaphore was expected")
		}
		return sem{}, errors.New("mp: a BoundedSemaphore arrived where a Semaphore was expected")
	}
	return m, nil
}

func (m *sem) marshal() ([]byte, error) {
	if m.value == nil {
		return nil, ErrClosed
	}
	return m.s.marshal()
}

func (m *sem) tryAcquire() bool {
	for {
		v := m.value.Load()
		if v == 0 {
			return false
		}
		if m.value.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

func (m *sem) acquire(ctx context.Context) error {
	if m.tryAcquire() {
		return nil
	}
	if ctx.Err() == nil && spin(m.tryAcquire) {
		return nil
	}
	s := newSleeper(ctx, m.value)
	defer s.done()
	m.sleepers.Add(1)
	for {
		if m.tryAcquire() {
			m.sleepers.Add(^uint32(0))
			return nil
		}
		if err := s.sleep(m.value, 0, -1); err != nil {
			m.sleepers.Add(^uint32(0))
			// A Release may have woken this goroutine rather than another
			// sleeper: pass the wake-up on.
			if m.value.Load() > 0 && m.sleepers.Load() > 0 {
				futex.Wake(m.value, 1)
			}
			return err
		}
	}
}

func (m *sem) release() error {
	limit := uint32(MaxSemaphoreValue)
	if m.bounded {
		limit = m.bound
	}
	for {
		v := m.value.Load()
		if v >= limit {
			return ErrReleasedTooManyTimes
		}
		if m.value.CompareAndSwap(v, v+1) {
			break
		}
	}
	if m.sleepers.Load() > 0 {
		futex.Wake(m.value, 1)
	}
	return nil
}

// semaphore is what Semaphore and BoundedSemaphore share: all their
// methods but Release, whose documented limit differs, and UnmarshalCBOR,
// which accepts only its own kind. Whether Release is bounded is recorded
// in the shared memory (see sem), so the same code serves both.
type semaphore struct {
	m sem
}

// Acquire takes a unit, waiting until one is released or ctx is done. It
// returns nil or ctx.Err() (no unit taken).
func (s *semaphore) Acquire(ctx context.Context) error {
	if s.m.value == nil {
		return ErrClosed
	}
	err := s.m.acquire(ctx)
	runtime.KeepAlive(s)
	return err
}

// TryAcquire takes a unit if there is one and reports whether it did.
func (s *semaphore) TryAcquire() bool {
	ok := s.m.value != nil && s.m.tryAcquire()
	runtime.KeepAlive(s)
	return ok
}

func (s *semaphore) release() error {
	if s.m.value == nil {
		return ErrClosed
	}
	err := s.m.release()
	runtime.KeepAlive(s)
	return err
}

// Value returns the number of units available now (Python's get_value).
func (s *semaphore) Value() int {
	if s.m.value == nil {
		return 0
	}
	v := int(s.m.value.Load())
	runtime.KeepAlive(s)
	return v
}

// MarshalCBOR lets the semaphore travel to another process inside a
// message.
func (s *semaphore) MarshalCBOR() ([]byte, error) { return s.m.marshal() }

// makeSemaphore makes a semaphore and wraps it in O, a Semaphore or
// BoundedSemaphore, whose memory is released once it is garbage.
func makeSemaphore[O any](value int, bounded bool, wrap func(semaphore) *O) (*O, error) {
	m, err := newSem(value, bounded)
	if err != nil {
		return nil, err
	}
	s := wrap(semaphore{m: m})
	autoRelease(s, m.s)
	return s, nil
}

// receiveSem decodes a semaphore handle for owner, the Semaphore or
// BoundedSemaphore that embeds s, whose memory is released once owner is
// garbage.
func receiveSem[O any](owner *O, s *semaphore, data []byte, bounded bool) error {
	m, err := unmarshalSem(data, bounded)
	if err != nil {
		return err
	}
	s.m = m
	autoRelease(owner, m.s)
	return nil
}

// Semaphore is a counting semaphore shared between processes, like
// Python's multiprocessing.Semaphore: Acquire takes a unit, waiting while
// there is none, and Release gives one back. Any goroutine of any process
// that has it may release it. Pass it to children as (part of) an
// argument.
//
// Units are not owned (as with POSIX and Python semaphores): a unit taken
// by a process that dies without releasing it is lost, and the value stays
// lower. Waiters still honour their ctx, so give them a deadline where a
// process that holds a unit may die.
type Semaphore struct {
	semaphore
}

// NewSemaphore returns a Semaphore holding value units (0 ≤ value ≤
// MaxSemaphoreValue).
func NewSemaphore(value int) (*Semaphore, error) {
	return makeSemaphore(value, false, func(c semaphore) *Semaphore { return &Semaphore{c} })
}

// Release gives a unit back, waking a waiter if there is one. Releasing
// past MaxSemaphoreValue is an error (ErrReleasedTooManyTimes).
func (s *Semaphore) Release() error { return s.release() }

// UnmarshalCBOR receives a Semaphore sent by mp.
func (s *Semaphore) UnmarshalCBOR(data []byte) error {
	return receiveSem(s, &s.semaphore, data, false)
}

// BoundedSemaphore is a Semaphore whose value may not rise above its
// initial value, like Python's multiprocessing.BoundedSemaphore: a
// Release that would do so is an error and changes nothing. It is a
// safeguard against releasing more often than acquiring.
//
// As with Semaphore, a unit held by a process that dies is lost.
type BoundedSemaphore struct {
	semaphore
}

// NewBoundedSemaphore returns a BoundedSemaphore holding value units, also
// its bound (0 ≤ value ≤ MaxSemaphoreValue).
func NewBoundedSemaphore(value int) (*BoundedSemaphore, error) {
	return makeSemaphore(value, true, func(c semaphore) *BoundedSemaphore { return &BoundedSemaphore{c} })
}

// Release gives a unit back, waking a waiter if there is one. Releasing
// when the value is already the initial one returns
// ErrReleasedTooManyTimes.
func (s *BoundedSemaphore) Release() error { return s.release() }

// UnmarshalCBOR receives a BoundedSemaphore sent by mp.
func (s *BoundedSemaphore) UnmarshalCBOR(data []byte) error {
	return receiveSem(s, &s.semaphore, data, true)
}

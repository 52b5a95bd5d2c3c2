//go:build linux

package mp

import (
	"context"
	"runtime"
	"sync/atomic"

	"github.com/go-mp/mp/internal/futex"
)

// Event is a flag shared between processes, like Python's
// multiprocessing.Event: Set raises it and wakes every waiter, Clear lowers
// it, Wait waits until it is raised. Pass it to children as (part of) an
// argument.
//
// An Event has no owner, so nothing is lost when a process that uses it
// dies.
type Event struct {
	s shared
	// word holds the flag in bit 0 and, above it, a count of the times the
	// flag was raised: a waiter that sees the count change was woken by a
	// Set even if a Clear followed at once. Waiters sleep on it.
	word     *atomic.Uint32
	sleepers *atomic.Uint32 // goroutines asleep on word
}

// NewEvent returns an Event whose flag is not set.
func NewEvent() (*Event, error) {
	s, err := newShared(kindEvent, 8)
	if err != nil {
		return nil, err
	}
	e := &Event{}
	e.init(s)
	return e, nil
}

func (e *Event) init(s shared) {
	*e = Event{s: s, word: s.u32(0), sleepers: s.u32(4)}
	autoRelease(e, s)
}

// Set raises the flag and wakes every goroutine waiting for it.
func (e *Event) Set() error {
	if e.word == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(e)
	for {
		w := e.word.Load()
		if w&1 != 0 {
			return nil
		}
		if e.word.CompareAndSwap(w, (w+2)|1) {
			break
		}
	}
	if e.sleepers.Load() > 0 {
		futex.WakeAll(e.word)
	}
	return nil
}

// Clear lowers the flag.
func (e *Event) Clear() error {
	if e.word == nil {
		return ErrClosed
	}
	for {
		w := e.word.Load()
		if w&1 == 0 || e.word.CompareAndSwap(w, w&^1) {
			break
		}
	}
	runtime.KeepAlive(e)
	return nil
}

// IsSet reports whether the flag is raised. It is the non-blocking form of
// Wait.
func (e *Event) IsSet() bool {
	set := e.word != nil && e.word.Load()&1 != 0
	runtime.KeepAlive(e)
	return set
}

// Wait returns nil once the flag is raised (at once if it is), or
// ctx.Err() if ctx is done first. A Set during the wait wakes it even if
// the flag is cleared again before the waiter runs.
func (e *Event) Wait(ctx context.Context) error {
	if e.word == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(e)
	w := e.word.Load()
	if w&1 != 0 {
		return nil
	}
	// Only a Set changes the word while the flag is down.
	if ctx.Err() == nil && spin(func() bool { return e.word.Load() != w }) {
		return nil
	}
	s := newSleeper(ctx, e.word)
	defer s.done()
	e.sleepers.Add(1)
	defer e.sleepers.Add(^uint32(0))
	for {
		cur := e.word.Load()
		if cur&1 != 0 || cur>>1 != w>>1 {
			return nil
		}
		if err := s.sleep(e.word, cur, -1); err != nil {
			return err
		}
	}
}

// MarshalCBOR lets an Event travel to another process inside a message.
func (e *Event) MarshalCBOR() ([]byte, error) {
	if e.word == nil {
		return nil, ErrClosed
	}
	return e.s.marshal()
}

// UnmarshalCBOR receives an Event sent by mp.
func (e *Event) UnmarshalCBOR(data []byte) error {
	s, err := unmarshalShared(data, kindEvent)
	if err != nil {
		return err
	}
	e.init(s)
	return nil
}

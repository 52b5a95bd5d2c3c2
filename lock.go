//go:build linux

package mp

import (
	"context"
	"runtime"

	"github.com/go-mp/mp/internal/shm"
)

// Lock is a mutual-exclusion lock shared between processes, like Python's
// multiprocessing.Lock. Any goroutine of any process that has it may
// release it. Pass it to children as (part of) an argument.
//
// If the process holding the lock dies, the next acquirer gets the lock
// and an *OwnerDiedError (errors.Is ErrOwnerDied): the lock is then held,
// but the data it protects may be half-updated.
type Lock struct {
	s shared
	m mutex
}

// NewLock returns an unlocked Lock.
func NewLock() (*Lock, error) {
	s, err := newShared(kindLock, 8)
	if err != nil {
		return nil, err
	}
	return newLockOn(s), nil
}

func newLockOn(s shared) *Lock {
	l := &Lock{s: s, m: newMutex(s, 0)}
	autoRelease(l, s)
	return l
}

// Acquire blocks until the lock is taken or ctx is done. It returns nil,
// ctx.Err() (lock not taken), or an *OwnerDiedError (lock taken).
func (l *Lock) Acquire(ctx context.Context) error {
	if l.m.word == nil {
		return ErrClosed
	}
	dead, err := l.m.lock(ctx, shm.Self())
	runtime.KeepAlive(l)
	if err != nil {
		return err
	}
	if dead != 0 {
		return ownerDied(dead)
	}
	return nil
}

// TryAcquire takes the lock if it is free and reports whether it did.
func (l *Lock) TryAcquire() bool {
	ok := l.m.word != nil && l.m.tryLock(shm.Self())
	runtime.KeepAlive(l)
	return ok
}

// Release frees the lock. Releasing an unlocked Lock is an error.
func (l *Lock) Release() error {
	if l.m.word == nil {
		return ErrClosed
	}
	held := l.m.unlock()
	runtime.KeepAlive(l)
	if !held {
		return ErrNotHeld
	}
	return nil
}

// Locked reports whether the lock is held.
func (l *Lock) Locked() bool {
	held := l.m.word != nil && l.m.owner() != 0
	runtime.KeepAlive(l)
	return held
}

// MarshalCBOR lets a Lock travel to another process inside a message.
func (l *Lock) MarshalCBOR() ([]byte, error) { return l.s.marshal() }

// UnmarshalCBOR receives a Lock sent by mp.
func (l *Lock) UnmarshalCBOR(data []byte) error {
	s, err := unmarshalShared(data, kindLock)
	if err != nil {
		return err
	}
	l.s, l.m = s, newMutex(s, 0)
	autoRelease(l, s)
	return nil
}

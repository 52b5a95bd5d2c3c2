//go:build linux

package mp

import (
	"context"
	"runtime"
	"sync/atomic"

	"github.com/go-mp/mp/internal/goid"
	"github.com/go-mp/mp/internal/shm"
)

// RLock is a re-entrant lock shared between processes, like Python's
// multiprocessing.RLock: the goroutine holding it may acquire it again, and
// must release it as many times. Only the holder may release it.
//
// As with Lock, an acquirer that takes over from a holder that died gets
// an *OwnerDiedError with the lock held (once, at a depth of one).
type RLock struct {
	s      shared
	m      mutex
	holder *atomic.Uint64 // the holding goroutine's id, beside the mutex word
	depth  *atomic.Uint64
}

// NewRLock returns an unlocked RLock.
func NewRLock() (*RLock, error) {
	s, err := newShared(kindRLock, 24)
	if err != nil {
		return nil, err
	}
	return newRLockOn(s), nil
}

func newRLockOn(s shared) *RLock {
	r := &RLock{}
	r.init(s)
	return r
}

func (r *RLock) init(s shared) {
	*r = RLock{s: s, m: newMutex(s, 0), holder: s.u64(8), depth: s.u64(16)}
	autoRelease(r, s)
}

// Acquire blocks until the calling goroutine holds the lock or ctx is
// done; see Lock.Acquire for the errors.
func (r *RLock) Acquire(ctx context.Context) error {
	if r.depth == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(r)
	me, g := shm.Self(), goid.Get()
	if r.mine(me, g) {
		r.depth.Add(1)
		return nil
	}
	dead, err := r.m.lock(ctx, me)
	if err != nil {
		return err
	}
	r.holder.Store(g)
	r.depth.Store(1)
	if dead != 0 {
		return ownerDied(dead)
	}
	return nil
}

// TryAcquire takes the lock if it is free or already the caller's.
func (r *RLock) TryAcquire() bool {
	if r.depth == nil {
		return false
	}
	defer runtime.KeepAlive(r)
	me, g := shm.Self(), goid.Get()
	if r.mine(me, g) {
		r.depth.Add(1)
		return true
	}
	if !r.m.tryLock(me) {
		return false
	}
	r.holder.Store(g)
	r.depth.Store(1)
	return true
}

// Release undoes one Acquire. Releasing an RLock the caller does not hold
// is an error (ErrNotHeld).
func (r *RLock) Release() error {
	if r.depth == nil {
		return ErrClosed
	}
	defer runtime.KeepAlive(r)
	if !r.mine(shm.Self(), goid.Get()) {
		return ErrNotHeld
	}
	if r.depth.Add(^uint64(0)) == 0 {
		r.holder.Store(0)
		r.m.unlock()
	}
	return nil
}

// Held reports whether the calling goroutine holds the lock, and how many
// times it has acquired it.
func (r *RLock) Held() (bool, int) {
	if r.depth == nil || !r.mine(shm.Self(), goid.Get()) {
		return false, 0
	}
	return true, int(r.depth.Load())
}

func (r *RLock) mine(me, g uint64) bool {
	return r.m.owner() == me && r.holder.Load() == g
}

// releaseAll frees the lock whatever its depth and returns the depth, for
// Condition.Wait; restore takes it back.
func (r *RLock) releaseAll() (int, error) {
	if !r.mine(shm.Self(), goid.Get()) {
		return 0, ErrNotHeld
	}
	d := r.depth.Swap(0)
	r.holder.Store(0)
	r.m.unlock()
	return int(d), nil
}

func (r *RLock) restore(ctx context.Context, depth int) error {
	dead, err := r.m.lock(ctx, shm.Self())
	if err != nil {
		return err
	}
	r.holder.Store(goid.Get())
	r.depth.Store(uint64(depth))
	if dead != 0 {
		return ownerDied(dead)
	}
	return nil
}

// MarshalCBOR lets an RLock travel to another process inside a message.
func (r *RLock) MarshalCBOR() ([]byte, error) { return r.s.marshal() }

// UnmarshalCBOR receives an RLock sent by mp.
func (r *RLock) UnmarshalCBOR(data []byte) error {
	s, err := unmarshalShared(data, kindRLock)
	if err != nil {
		return err
	}
	r.init(s)
	return nil
}

//go:build linux

package mp

import (
	"context"
	"runtime"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/memcopy"
)

// arrayMem is what RawArray and Array share: the memory of the elements
// and the methods that use it without a lock.
type arrayMem[T any] struct {
	e elems[T]
}

// Len returns the number of elements (0 after Close).
func (m *arrayMem[T]) Len() int { return len(m.e.e) }

// Slice returns the elements themselves: a slice over the shared memory,
// which other processes see and change (on an Array, use it while holding
// the lock). It stays valid until Close and must not be used after it.
// (An object whose slice was taken and that is never closed keeps its
// memory mapped until the process exits.) Slice returns nil after Close.
func (m *arrayMem[T]) Slice() []T { return m.e.view() }

// Close releases the memory in this process (not an Array's lock, which
// may guard other objects). It must not be called while other goroutines
// use the object; its operations then fail with ErrClosed.
func (m *arrayMem[T]) Close() error { return m.e.close() }

// RawArray is a fixed-length array of T in shared memory, without a lock,
// like Python's multiprocessing.RawArray. T must be a fixed-size type (see
// [RawValue]).
//
// A RawArray passed to a child process (as, or inside, its argument, or in
// a message over a Conn) arrives as the same memory. Accesses are plain
// memory accesses: guard them with a [Lock] or [Semaphore], or use an
// [Array]. CopyFrom and CopyTo move whole slices at memmove speed; Slice
// gives direct access.
//
// The memory is released in this process by Close, or once the RawArray
// is garbage; it is freed when no process holds it any more.
type RawArray[T any] struct {
	arrayMem[T]
}

// NewRawArray returns a RawArray of n zero elements.
func NewRawArray[T any](n int) (*RawArray[T], error) {
	e, err := newElems[T](kindArray, n)
	if err != nil {
		return nil, err
	}
	a := &RawArray[T]{arrayMem[T]{e: e}}
	autoReleaseElems(a, &a.e)
	return a, nil
}

// NewRawArrayFrom returns a RawArray holding a copy of s.
func NewRawArrayFrom[T any](s []T) (*RawArray[T], error) {
	a, err := NewRawArray[T](len(s))
	if err != nil {
		return nil, err
	}
	copy(a.e.e, s)
	return a, nil
}

// Get returns element i, or an error wrapping ErrIndexOutOfRange.
func (a *RawArray[T]) Get(i int) (T, error) {
	return get(&a.e, i, a)
}

// Set sets element i, or returns an error wrapping ErrIndexOutOfRange.
func (a *RawArray[T]) Set(i int, v T) error {
	return set(&a.e, i, v, a)
}

// CopyFrom copies src into the first len(src) elements. It fails with
// ErrIndexOutOfRange, copying nothing, when src is longer than the array.
func (a *RawArray[T]) CopyFrom(src []T) error {
	return copyFrom(&a.e, src, a)
}

// CopyTo copies the first len(dst) elements into dst. It fails with
// ErrIndexOutOfRange, copying nothing, when dst is longer than the array.
func (a *RawArray[T]) CopyTo(dst []T) error {
	return copyTo(&a.e, dst, a)
}

// MarshalCBOR lets a RawArray travel to another process inside a message.
func (a *RawArray[T]) MarshalCBOR() ([]byte, error) { return a.e.marshal() }

// UnmarshalCBOR receives a RawArray sent by mp. It fails with
// ErrTypeMismatch if the sender's RawArray holds another element type.
func (a *RawArray[T]) UnmarshalCBOR(data []byte) error {
	e, err := unmarshalRaw[T](data, kindArray)
	return adopt(a, &a.e, e, err)
}

// ---- Array ----

// Array is a fixed-length array of T in shared memory guarded by a lock,
// like Python's multiprocessing.Array: Get, Set, CopyFrom and CopyTo take
// the lock. T must be a fixed-size type (see [RawValue]).
//
// The lock is a new [RLock] unless [WithLock] gives another. To do several
// operations as one, hold the lock ([Array.Acquire], or through
// [Array.Locker]) and use Slice, which does not take it.
//
// An Array passed to a child process arrives working, with its lock. The
// memory is released in this process by Close, or once the Array is
// garbage. As with [Value], an operation that took the lock over from a
// process that died holding it does its work and returns an error that
// matches ErrOwnerDied.
type Array[T any] struct {
	arrayMem[T]
	guard
}

// NewArray returns an Array of n zero elements, guarded by a new RLock or
// the lock given by WithLock.
func NewArray[T any](n int, opts ...SyncOption) (*Array[T], error) {
	e, g, err := newGuarded[T](kindArray, n, opts)
	if err != nil {
		return nil, err
	}
	a := &Array[T]{arrayMem[T]{e: e}, g}
	autoReleaseElems(a, &a.e)
	return a, nil
}

// NewArrayFrom returns an Array holding a copy of s.
func NewArrayFrom[T any](s []T, opts ...SyncOption) (*Array[T], error) {
	a, err := NewArray[T](len(s), opts...)
	if err != nil {
		return nil, err
	}
	copy(a.e.e, s)
	return a, nil
}

// Get returns element i, read under the lock.
func (a *Array[T]) Get(ctx context.Context, i int) (T, error) {
	var v T
	if a.e.e == nil {
		return v, ErrClosed
	}
	err := withLock(ctx, a.lock, func() (err error) {
		v, err = get(&a.e, i, a)
		return err
	})
	return v, err
}

// Set sets element i under the lock.
func (a *Array[T]) Set(ctx context.Context, i int, v T) error {
	if a.e.e == nil {
		return ErrClosed
	}
	return withLock(ctx, a.lock, func() error { return set(&a.e, i, v, a) })
}

// CopyFrom copies src into the first len(src) elements under the lock,
// or fails with ErrIndexOutOfRange when src is longer than the array.
func (a *Array[T]) CopyFrom(ctx context.Context, src []T) error {
	if a.e.e == nil || len(src) > len(a.e.e) {
		return copyFrom(&a.e, src, a)
	}
	return withLock(ctx, a.lock, func() error { return copyFrom(&a.e, src, a) })
}

// CopyTo copies the first len(dst) elements into dst under the lock, or
// fails with ErrIndexOutOfRange when dst is longer than the array.
func (a *Array[T]) CopyTo(ctx context.Context, dst []T) error {
	if a.e.e == nil || len(dst) > len(a.e.e) {
		return copyTo(&a.e, dst, a)
	}
	return withLock(ctx, a.lock, func() error { return copyTo(&a.e, dst, a) })
}

// MarshalCBOR lets an Array and its lock travel to another process inside
// a message.
func (a *Array[T]) MarshalCBOR() ([]byte, error) { return marshalSync(&a.e, a.lock) }

// UnmarshalCBOR receives an Array sent by mp. It fails with
// ErrTypeMismatch if the sender's Array holds another element type.
func (a *Array[T]) UnmarshalCBOR(data []byte) error {
	return receiveGuarded(a, &a.e, &a.guard, data, kindArray)
}

// ---- element access shared by both forms; owner is kept alive across
// the access ----

func get[T, O any](e *elems[T], i int, owner *O) (T, error) {
	if e.e == nil {
		var zero T
		return zero, ErrClosed
	}
	if uint(i) >= uint(len(e.e)) {
		var zero T
		return zero, indexError(i, len(e.e))
	}
	v := e.e[i]
	runtime.KeepAlive(owner)
	return v, nil
}

func set[T, O any](e *elems[T], i int, v T, owner *O) error {
	if e.e == nil {
		return ErrClosed
	}
	if uint(i) >= uint(len(e.e)) {
		return indexError(i, len(e.e))
	}
	e.e[i] = v
	runtime.KeepAlive(owner)
	return nil
}

func copyFrom[T, O any](e *elems[T], src []T, owner *O) error {
	if e.e == nil {
		return ErrClosed
	}
	if len(src) > len(e.e) {
		return copyError("in", len(src), len(e.e))
	}
	// Streamed: another process is likely to read it next (float_channel:
	// 5 -> 7.4-10.5 GB/s).
	memcopy.Stream(codec.AsBytes(e.e), codec.AsBytes(src))
	runtime.KeepAlive(owner)
	return nil
}

func copyTo[T, O any](e *elems[T], dst []T, owner *O) error {
	if e.e == nil {
		return ErrClosed
	}
	if len(dst) > len(e.e) {
		return copyError("out", len(dst), len(e.e))
	}
	// A plain copy: the caller reads dst next, so it should be in cache.
	copy(dst, e.e)
	runtime.KeepAlive(owner)
	return nil
}

//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/codec"
)

// A SyncOption configures a [Value] or [Array] made by NewValue, NewArray
// or NewArrayFrom.
type SyncOption func(*syncConfig)

type syncConfig struct {
	lock SharedLock
}

// WithLock makes the Value or Array use l, a *Lock or *RLock that may
// guard other objects too, instead of a new RLock of its own (Python's
// lock= argument). A nil l means the default: a new RLock. For no lock at
// all use the raw forms, [RawValue] and [RawArray].
func WithLock(l SharedLock) SyncOption {
	return func(c *syncConfig) { c.lock = l }
}

// syncLock returns the lock the options ask for, or a new RLock.
func syncLock(opts []SyncOption) (SharedLock, error) {
	var c syncConfig
	for _, o := range opts {
		o(&c)
	}
	switch l := c.lock.(type) {
	case nil:
		return NewRLock()
	case *Lock:
		if l == nil || l.m.word == nil {
			return nil, errors.New("mp: WithLock given a nil or zero *Lock")
		}
	case *RLock:
		if l == nil || l.depth == nil {
			return nil, errors.New("mp: WithLock given a nil or zero *RLock")
		}
	}
	return c.lock, nil
}

// syncWire is the encoded form of a Value or Array with its lock: the
// memory's handle, then the lock's.
type syncWire struct {
	_     struct{} `cbor:",toarray"`
	Data  cbor.RawMessage
	Lock  *Lock
	RLock *RLock
}

func marshalSync[T any](e *elems[T], l SharedLock) ([]byte, error) {
	data, err := e.marshal()
	if err != nil {
		return nil, err
	}
	w := syncWire{Data: data}
	switch l := l.(type) {
	case *Lock:
		w.Lock = l
	case *RLock:
		w.RLock = l
	default:
		return nil, ErrClosed // a zero Value or Array
	}
	return codec.Marshal(w)
}

func unmarshalSync[T any](data []byte, kind uint32) (elems[T], SharedLock, error) {
	if isCBORTag(data) {
		// A bare handle: the raw form, or another object.
		what := "another object"
		if k, ok := handleKind(data); ok && k == kind {
			what = "Raw" + kindName(kind)
		} else if ok {
			what = kindName(k)
		}
		return elems[T]{}, nil, arrivedError(what, kindName(kind))
	}
	var w syncWire
	if err := codec.Unmarshal(data, &w); err != nil {
		return elems[T]{}, nil, fmt.Errorf("mp: decode %s: %w", kindName(kind), err)
	}
	var l SharedLock
	switch {
	case w.Lock != nil && w.RLock == nil:
		l = w.Lock
	case w.RLock != nil && w.Lock == nil:
		l = w.RLock
	default:
		return elems[T]{}, nil, fmt.Errorf("mp: %s arrived without its lock", kindName(kind))
	}
	e, err := decodeElems[T](w.Data, kind)
	return e, l, err
}

// unmarshalRaw decodes the handle of a raw Value or Array.
func unmarshalRaw[T any](data []byte, kind uint32) (elems[T], error) {
	if !isCBORTag(data) {
		// An object with a lock: the synchronized form, or another one.
		what := "another object"
		var w []cbor.RawMessage
		if codec.Unmarshal(data, &w) == nil && len(w) > 0 {
			if k, ok := handleKind(w[0]); ok {
				what = kindName(k)
			}
		}
		return elems[T]{}, arrivedError(what, "Raw"+kindName(kind))
	}
	return decodeElems[T](data, kind)
}

// handleKind returns the kind of the shared object an encoded handle
// names, closing its descriptor.
func handleKind(data []byte) (uint32, bool) {
	fd, kind, err := codec.DecodeHandle(data, codec.HandleShared)
	if err != nil {
		return 0, false
	}
	closeFD(fd)
	return kind, true
}

func arrivedError(got, want string) error {
	return fmt.Errorf("mp: %s arrived where %s was expected", withArticle(got), withArticle(want))
}

func withArticle(s string) string {
	if strings.HasPrefix(s, "another ") {
		return s
	}
	if s != "" && strings.IndexByte("AEIOU", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + s
}

// isCBORTag reports whether data starts with a CBOR tag (a bare handle),
// not an array (a syncWire).
func isCBORTag(data []byte) bool { return len(data) > 0 && data[0]>>5 == 6 }

// ---- RawValue ----

// valueMem is what RawValue and Value share: the memory of one T and the
// methods that use it without a lock.
type valueMem[T any] struct {
	e elems[T]
}

// Load returns the value (the zero value after Close). It does not take
// a lock: on a Value, call it while holding the Value's lock.
func (m *valueMem[T]) Load() T {
	if m.e.e == nil {
		var zero T
		return zero
	}
	v := m.e.e[0]
	runtime.KeepAlive(m)
	return v
}

// Store sets the value (nothing after Close). It does not take a lock: on
// a Value, call it while holding the Value's lock.
func (m *valueMem[T]) Store(v T) {
	if m.e.e != nil {
		m.e.e[0] = v
		runtime.KeepAlive(m)
	}
}

// Ptr returns a pointer to the value in shared memory, for the fastest
// access and for updating part of a struct or array in place (on a Value,
// while holding its lock). The pointer stays valid until Close; after
// Close it must not be used. (An object whose pointer was taken and that
// is never closed keeps its memory mapped until the process exits.) Ptr
// returns nil after Close.
func (m *valueMem[T]) Ptr() *T {
	v := m.e.view()
	if v == nil {
		return nil
	}
	return &v[0]
}

// Close releases the memory in this process (not a Value's lock, which
// may guard other objects). It must not be called while other goroutines
// use the object; Load then returns the zero value, Store does nothing
// and a Value's other operations fail with ErrClosed.
func (m *valueMem[T]) Close() error { return m.e.close() }

// adopt makes e, received by owner (the object that embeds dst), its
// memory, released once owner is garbage.
func adopt[T, O any](owner *O, dst *elems[T], e elems[T], err error) error {
	if err != nil {
		return err
	}
	*dst = e
	autoReleaseElems(owner, dst)
	return nil
}

// RawValue is a value of type T in shared memory, without a lock, like
// Python's multiprocessing.RawValue. T must be a fixed-size type: an
// integer, float, complex or bool type, or an array or struct made only of
// those (see [ErrUnsupportedType]).
//
// A RawValue passed to a child process (as, or inside, its argument, or in
// a message over a Conn) arrives as the same memory: writes in one process
// are seen in the others. Reads and writes are plain memory accesses, not
// atomic: guard them with a [Lock], or use a [Value].
//
// The memory is released in this process by Close, or once the RawValue is
// garbage; it is freed when no process holds it any more.
type RawValue[T any] struct {
	valueMem[T]
}

// NewRawValue returns a RawValue holding v.
func NewRawValue[T any](v T) (*RawValue[T], error) {
	e, err := newElems[T](kindValue, 1)
	if err != nil {
		return nil, err
	}
	r := &RawValue[T]{valueMem[T]{e: e}}
	autoReleaseElems(r, &r.e)
	r.e.e[0] = v
	return r, nil
}

// MarshalCBOR lets a RawValue travel to another process inside a message.
func (r *RawValue[T]) MarshalCBOR() ([]byte, error) { return r.e.marshal() }

// UnmarshalCBOR receives a RawValue sent by mp. It fails with
// ErrTypeMismatch if the sender's RawValue holds another type.
func (r *RawValue[T]) UnmarshalCBOR(data []byte) error {
	e, err := unmarshalRaw[T](data, kindValue)
	return adopt(r, &r.e, e, err)
}

// ---- Value ----

// guard is the lock of a Value or Array, with the methods that hold it
// across several operations.
type guard struct {
	lock SharedLock
}

// Locker returns the lock (Python's get_lock), to hold it across several
// operations.
func (g *guard) Locker() SharedLock { return g.lock }

// Acquire takes the lock; see Lock.Acquire.
func (g *guard) Acquire(ctx context.Context) error {
	if g.lock == nil {
		return ErrClosed
	}
	return g.lock.Acquire(ctx)
}

// Release frees the lock.
func (g *guard) Release() error {
	if g.lock == nil {
		return ErrClosed
	}
	return g.lock.Release()
}

// newGuarded makes the memory of a Value or Array, n elements of kind,
// and the lock opts ask for.
func newGuarded[T any](kind uint32, n int, opts []SyncOption) (elems[T], guard, error) {
	// Checked first so that a bad T makes no lock.
	if err := codec.FixedTypeOf[T]().Err; err != nil {
		return elems[T]{}, guard{}, err
	}
	l, err := syncLock(opts)
	if err != nil {
		return elems[T]{}, guard{}, err
	}
	e, err := newElems[T](kind, n)
	return e, guard{l}, err
}

// receiveGuarded decodes a Value or Array with its lock for owner, the
// object that embeds dst and g.
func receiveGuarded[T, O any](owner *O, dst *elems[T], g *guard, data []byte, kind uint32) error {
	e, l, err := unmarshalSync[T](data, kind)
	if err == nil {
		g.lock = l
	}
	return adopt(owner, dst, e, err)
}

// Value is a value of type T in shared memory guarded by a lock, like
// Python's multiprocessing.Value: Get, Set and Update take the lock, so
// every process sees whole values. T must be a fixed-size type (see
// [RawValue]).
//
// The lock is a new [RLock] unless [WithLock] gives another. To do several
// operations as one, hold the lock ([Value.Acquire], or through
// [Value.Locker]) and use Load, Store and Ptr, which do not take it (with
// an RLock, Get, Set and Update may be called while holding it too).
//
// A Value passed to a child process (as, or inside, its argument) arrives
// working, with its lock: both are the same in every process. The memory
// is released in this process by Close, or once the Value is garbage.
//
// When a process dies holding the lock, the next operation takes the lock
// over, does its work, and returns an error that matches ErrOwnerDied: the
// value may be one the dead process left half-written.
type Value[T any] struct {
	valueMem[T]
	guard
}

// NewValue returns a Value holding v, guarded by a new RLock or the lock
// given by WithLock.
func NewValue[T any](v T, opts ...SyncOption) (*Value[T], error) {
	e, g, err := newGuarded[T](kindValue, 1, opts)
	if err != nil {
		return nil, err
	}
	x := &Value[T]{valueMem[T]{e: e}, g}
	autoReleaseElems(x, &x.e)
	x.e.e[0] = v
	return x, nil
}

// withLock runs op holding l. When the lock was taken over from a process
// that died holding it, op runs all the same and the owner-died error is
// returned (unless op fails). The lock is released even if op panics.
func withLock(ctx context.Context, l SharedLock, op func() error) (err error) {
	if l == nil {
		return ErrClosed
	}
	if err = l.Acquire(ctx); err != nil && !errors.Is(err, ErrOwnerDied) {
		return err
	}
	defer func() {
		if rerr := l.Release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if oerr := op(); oerr != nil {
		err = oerr
	}
	return err
}

// Get returns the value, read under the lock.
func (x *Value[T]) Get(ctx context.Context) (T, error) {
	var v T
	if x.e.e == nil {
		return v, ErrClosed
	}
	err := withLock(ctx, x.lock, func() error {
		v = x.e.e[0]
		return nil
	})
	runtime.KeepAlive(x)
	return v, err
}

// Set sets the value under the lock.
func (x *Value[T]) Set(ctx context.Context, v T) error {
	if x.e.e == nil {
		return ErrClosed
	}
	err := withLock(ctx, x.lock, func() error {
		x.e.e[0] = v
		return nil
	})
	runtime.KeepAlive(x)
	return err
}

// Update replaces the value with fn(value) under the lock, as one step
// for every process, and returns the new value. fn must not take the lock
// (unless it is an RLock) and should be quick: others wait for it.
func (x *Value[T]) Update(ctx context.Context, fn func(T) T) (T, error) {
	var v T
	if x.e.e == nil {
		return v, ErrClosed
	}
	err := withLock(ctx, x.lock, func() error {
		v = fn(x.e.e[0])
		x.e.e[0] = v
		return nil
	})
	runtime.KeepAlive(x)
	return v, err
}

// MarshalCBOR lets a Value and its lock travel to another process inside
// a message.
func (x *Value[T]) MarshalCBOR() ([]byte, error) { return marshalSync(&x.e, x.lock) }

// UnmarshalCBOR receives a Value sent by mp. It fails with ErrTypeMismatch
// if the sender's Value holds another type.
func (x *Value[T]) UnmarshalCBOR(data []byte) error {
	return receiveGuarded(x, &x.e, &x.guard, data, kindValue)
}

//go:build linux

package mp

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/go-mp/mp/internal/shm"
	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/codec"
)

var (
	// ErrTypeMismatch is returned when a Value or Array arrives in a
	// process as a type other than the one it was made of (a Value[int64]
	// received into a Value[float32], say).
	ErrTypeMismatch = errors.New("mp: shared memory holds another type")
	// ErrIndexOutOfRange is returned for an index or a copy that does not
	// fit the Array.
	ErrIndexOutOfRange = errors.New("mp: index out of range")
	// ErrInvalidSize is returned for a negative or too large Array length
	// or SharedMemory size.
	ErrInvalidSize = errors.New("mp: invalid size")
)

// The header parameters of a Value or Array: the element size and type
// fingerprint (see codec.FixedType) and the number of elements. The
// elements start right after the header, 64-byte aligned.
const (
	paramElemSize = 0
	paramTypeFP   = 1
	paramLen      = 2
)

// maxSharedBytes bounds one shared object (shm.Open refuses larger ones).
const maxSharedBytes = 1 << 46

// elems is the memory of a Value (one element) or an Array.
type elems[T any] struct {
	s    shared
	e    []T // nil once closed
	m    *mapping
	stop runtime.Cleanup
}

// mapping is what the cleanup of a Value or Array releases once the object
// is garbage. Views (Ptr, Slice) are plain Go pointers into the mapping
// that do not keep the object alive, so once one was handed out the
// mapping is left in place (only the descriptor is closed): a view never
// points into unmapped memory unless Close was called.
type mapping struct {
	seg    *shm.Segment
	pinned atomic.Bool
}

func (m *mapping) release() {
	if !m.pinned.Load() {
		m.seg.Close()
		return
	}
	// The object is garbage, so nothing can use the Segment again: close
	// its descriptor and keep the memory mapped until the process ends.
	if fd := m.seg.FD(); fd >= 0 {
		unix.Close(fd)
	}
}

// ErrUnsupportedType is returned when a Value or Array is made of a type
// that cannot live in shared memory: anything holding a pointer, slice,
// map, string, interface, channel, function or uintptr. Only integers,
// floats, complex numbers, bools, and arrays and structs made of those
// can be shared.
var ErrUnsupportedType = codec.ErrUnsupportedType

// newElems maps n zeroed elements of T in a new shared object of kind.
func newElems[T any](kind uint32, n int) (elems[T], error) {
	ft := codec.FixedTypeOf[T]()
	if ft.Err != nil {
		return elems[T]{}, ft.Err
	}
	if n < 0 || uint64(n) > (maxSharedBytes-headerSize)/uint64(ft.Size) {
		return elems[T]{}, fmt.Errorf("%w: %d elements of %s", ErrInvalidSize, n, ft.Name)
	}
	s, err := newShared(kind, n*int(ft.Size))
	if err != nil {
		return elems[T]{}, err
	}
	s.param(paramElemSize).Store(uint64(ft.Size))
	s.param(paramTypeFP).Store(ft.FP)
	s.param(paramLen).Store(uint64(n))
	return elemsOn[T](s, n), nil
}

// decodeElems maps the object an encoded handle names and checks that it
// holds elements of T.
func decodeElems[T any](data []byte, kind uint32) (elems[T], error) {
	ft := codec.FixedTypeOf[T]()
	if ft.Err != nil {
		return elems[T]{}, ft.Err
	}
	s, err := unmarshalShared(data, kind)
	if err != nil {
		return elems[T]{}, err
	}
	size, fp, n := s.param(paramElemSize).Load(), s.param(paramTypeFP).Load(), s.param(paramLen).Load()
	switch {
	case size != uint64(ft.Size):
		err = fmt.Errorf("%w: a %s of %d-byte elements arrived as a %s[%s] (%d bytes)",
			ErrTypeMismatch, kindName(kind), size, kindName(kind), ft.Name, ft.Size)
	case fp != ft.FP:
		err = fmt.Errorf("%w: a %s of another %d-byte type arrived as a %s[%s]",
			ErrTypeMismatch, kindName(kind), size, kindName(kind), ft.Name)
	case n > uint64(len(s.seg.Bytes())-headerSize)/size, kind == kindValue && n != 1:
		err = fmt.Errorf("mp: shared %s of %d elements does not fit its memory", kindName(kind), n)
	}
	if err != nil {
		s.release()
		return elems[T]{}, err
	}
	return elemsOn[T](s, int(n)), nil
}

func elemsOn[T any](s shared, n int) elems[T] {
	p := (*T)(unsafe.Pointer(&s.seg.Bytes()[headerSize]))
	return elems[T]{s: s, e: unsafe.Slice(p, n), m: &mapping{seg: s.seg}}
}

// autoRelease releases the memory once owner, the object holding e, is
// garbage.
func autoReleaseElems[T, O any](owner *O, e *elems[T]) {
	e.stop = runtime.AddCleanup(owner, (*mapping).release, e.m)
}

// view hands out the elements for use outside the object's methods.
func (e *elems[T]) view() []T {
	if e.e != nil && !e.m.pinned.Load() {
		e.m.pinned.Store(true)
	}
	return e.e
}

func (e *elems[T]) close() error {
	if e.e == nil {
		return nil
	}
	e.e = nil
	e.stop.Stop()
	return e.m.seg.Close()
}

func (e *elems[T]) marshal() ([]byte, error) {
	if e.e == nil {
		return nil, ErrClosed
	}
	return e.s.marshal()
}

func indexError(i, n int) error {
	return fmt.Errorf("%w: index %d with length %d", ErrIndexOutOfRange, i, n)
}

func copyError(what string, have, n int) error {
	return fmt.Errorf("%w: copy %s %d elements with length %d", ErrIndexOutOfRange, what, have, n)
}

package mp

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

// A chunk of items for a pool task (Map, Imap and their results) travels
// CBOR-encoded, except when its items are of a fixed-size type (integers,
// floats, bools, and arrays and structs of those: see fixedTypeOf): then
// it travels as the items' memory, copied as it is. Both ends are the same
// binary on the same machine, so the layout is the same, and a chunk of a
// million ints costs a memmove instead of a million encodings.

var rawChunkTypes sync.Map // reflect.Type -> bool

// rawChunks reports whether chunks of T travel as raw memory: T is a
// fixed-size type without a codec of its own.
func rawChunks[T any]() bool {
	t := reflect.TypeFor[T]()
	if ok, found := rawChunkTypes.Load(t); found {
		return ok.(bool)
	}
	ok := fixedTypeOf[T]().err == nil && !hasOwnCodec(t)
	rawChunkTypes.Store(t, ok)
	return ok
}

// hasOwnCodec reports whether t (or *t) encodes or decodes itself.
func hasOwnCodec(t reflect.Type) bool {
	for _, i := range []reflect.Type{
		reflect.TypeFor[cbor.Marshaler](), reflect.TypeFor[cbor.Unmarshaler](),
	} {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return false
}

// Single arguments and results of a fixed-size type travel raw too.

// encodeOne encodes one argument.
func encodeOne[T any](v T) ([]byte, error) {
	if rawChunks[T]() {
		return bytes.Clone(asBytes(unsafe.Slice(&v, 1))), nil
	}
	return encodeArg(v)
}

// oneBytes returns the encoding of one result, written into buf.
func oneBytes[T any](buf *bytes.Buffer, v T) ([]byte, error) {
	if rawChunks[T]() {
		buf.Write(asBytes(unsafe.Slice(&v, 1)))
	} else if err := encodeItem(buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeOne decodes one encoded argument or result into v.
func decodeOne[T any](b []byte, v *T) error {
	if rawChunks[T]() {
		raw := asBytes(unsafe.Slice(v, 1))
		if len(b) != len(raw) {
			return fmt.Errorf("mp: a %T came as %d bytes, not %d", *v, len(b), len(raw))
		}
		copy(raw, b)
		return nil
	}
	return decMode.Unmarshal(b, v)
}

// encodeChunk encodes a chunk of items (a copy: the caller may reuse items).
func encodeChunk[T any](items []T) ([]byte, error) {
	if rawChunks[T]() {
		return bytes.Clone(asBytes(items)), nil
	}
	return encodeArg(items)
}

// chunkBytes returns the encoding of items: their own memory if they are
// raw, or else their CBOR encoding written into buf.
func chunkBytes[T any](buf *bytes.Buffer, items []T) ([]byte, error) {
	if rawChunks[T]() {
		return asBytes(items), nil
	}
	if err := encodeItem(buf, items); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// chunkInto returns the memory of dst as bytes if a chunk of its items
// can be received straight into it, else nil.
func chunkInto[T any](dst []T) []byte {
	if rawChunks[T]() {
		return asBytes(dst)
	}
	return nil
}

// decodeChunk decodes an encoded chunk of exactly len(dst) items into dst.
func decodeChunk[T any](b []byte, dst []T) error {
	if rawChunks[T]() {
		raw := asBytes(dst)
		if len(b) != len(raw) {
			return fmt.Errorf("mp: a chunk of %d items of %T came as %d bytes, not %d", len(dst), *new(T), len(b), len(raw))
		}
		if len(raw) > 0 && &raw[0] != &b[0] {
			copy(raw, b)
		} // else received in place
		return nil
	}
	d := dst[:0:len(dst)]
	if err := decMode.Unmarshal(b, &d); err != nil {
		return err
	}
	if len(d) != len(dst) {
		return fmt.Errorf("mp: a chunk of %d items gave %d", len(dst), len(d))
	}
	if len(d) > 0 && &d[0] != &dst[0] {
		copy(dst, d)
	}
	return nil
}

// resultsInPlace returns where the results for the chunk as go: over as
// itself when raw Rs are no larger than raw As (result i then overwrites
// only items already read), so that a chunk's results need no fresh
// memory; else a new slice.
func resultsInPlace[A, R any](as []A) []R {
	var a A
	var r R
	if len(as) == 0 || !rawChunks[A]() || !rawChunks[R]() || unsafe.Sizeof(r) > unsafe.Sizeof(a) ||
		uintptr(unsafe.Pointer(&as[0]))%unsafe.Alignof(r) != 0 {
		return make([]R, len(as))
	}
	return unsafe.Slice((*R)(unsafe.Pointer(&as[0])), len(as))
}

// decodeChunkAny decodes an encoded chunk of any number of items. Raw
// items may alias b, which the caller gives up.
func decodeChunkAny[T any](b []byte) ([]T, error) {
	if rawChunks[T]() {
		var zero T
		size := int(unsafe.Sizeof(zero))
		if len(b)%size != 0 {
			return nil, fmt.Errorf("mp: a chunk of %T came as %d bytes, not a multiple of %d", zero, len(b), size)
		}
		if len(b) == 0 {
			return []T{}, nil
		}
		if uintptr(unsafe.Pointer(&b[0]))%unsafe.Alignof(zero) == 0 {
			// T holds no pointers, so b's memory can be seen as Ts.
			return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/size), nil
		}
		out := make([]T, len(b)/size)
		copy(asBytes(out), b)
		return out, nil
	}
	var out []T
	err := decMode.Unmarshal(b, &out)
	return out, err
}

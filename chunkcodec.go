package mp

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"

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

// encodeChunk encodes a chunk of items (a copy: the caller may reuse items).
func encodeChunk[T any](items []T) ([]byte, error) {
	if rawChunks[T]() {
		return bytes.Clone(asBytes(items)), nil
	}
	return encodeArg(items)
}

// appendChunk appends the encoding of items to buf.
func appendChunk[T any](buf *bytes.Buffer, items []T) error {
	if rawChunks[T]() {
		buf.Write(asBytes(items))
		return nil
	}
	return encodeItem(buf, items)
}

// decodeChunk decodes an encoded chunk of exactly len(dst) items into dst.
func decodeChunk[T any](b []byte, dst []T) error {
	if rawChunks[T]() {
		raw := asBytes(dst)
		if len(b) != len(raw) {
			return fmt.Errorf("mp: a chunk of %d items of %T came as %d bytes, not %d", len(dst), *new(T), len(b), len(raw))
		}
		copy(raw, b)
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

// decodeChunkAny decodes an encoded chunk of any number of items.
func decodeChunkAny[T any](b []byte) ([]T, error) {
	if rawChunks[T]() {
		size := len(asBytes(make([]T, 1)))
		if len(b)%size != 0 {
			return nil, fmt.Errorf("mp: a chunk of %T came as %d bytes, not a multiple of %d", *new(T), len(b), size)
		}
		out := make([]T, len(b)/size)
		copy(asBytes(out), b)
		return out, nil
	}
	var out []T
	err := decMode.Unmarshal(b, &out)
	return out, err
}

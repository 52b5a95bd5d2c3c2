//go:build linux

package codec

import (
	"bytes"
	"fmt"
	"reflect"
	"unicode/utf8"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

// A chunk of items for a pool task (Map, Imap and their results) travels
// CBOR-encoded, except when its items are of a fixed-size type (integers,
// floats, bools, and arrays and structs of those: see FixedTypeOf): then
// it travels as the items' memory, copied as it is. Both ends are the same
// binary on the same machine, so the layout is the same, and a chunk of a
// million ints costs a memmove instead of a million encodings.

var rawChunkTypes typeCache[bool]

// RawChunks reports whether chunks of T travel as raw memory: T is a
// fixed-size type without a codec of its own.
func RawChunks[T any]() bool {
	return rawChunkTypes.get(reflect.TypeFor[T](), func(t reflect.Type) bool {
		return FixedTypeOf[T]().Err == nil && !HasOwnCodec(t)
	})
}

// HasOwnCodec reports whether t (or *t) encodes or decodes itself.
func HasOwnCodec(t reflect.Type) bool {
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

// EncodeOne encodes one argument.
func EncodeOne[T any](v T) ([]byte, error) {
	if RawChunks[T]() {
		return bytes.Clone(AsBytes(unsafe.Slice(&v, 1))), nil
	}
	return EncodeArg(v)
}

// OneBytes returns the encoding of one result, written into buf.
func OneBytes[T any](buf *bytes.Buffer, v T) ([]byte, error) {
	if RawChunks[T]() {
		buf.Write(AsBytes(unsafe.Slice(&v, 1)))
	} else if err := EncodeItem(buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeOne decodes one encoded argument or result into v.
func DecodeOne[T any](b []byte, v *T) error {
	if RawChunks[T]() {
		raw := AsBytes(unsafe.Slice(v, 1))
		if len(b) != len(raw) {
			return fmt.Errorf("mp: a %T came as %d bytes, not %d", *v, len(b), len(raw))
		}
		copy(raw, b)
		return nil
	}
	return Unmarshal(b, v)
}

// EncodeChunk encodes a chunk of items (a copy: the caller may reuse items).
func EncodeChunk[T any](items []T) ([]byte, error) {
	if RawChunks[T]() {
		return bytes.Clone(AsBytes(items)), nil
	}
	return EncodeArg(items)
}

// ChunkBytes returns the encoding of items: their own memory if they are
// raw, or else their CBOR encoding written into buf.
func ChunkBytes[T any](buf *bytes.Buffer, items []T) ([]byte, error) {
	if RawChunks[T]() {
		return AsBytes(items), nil
	}
	if err := EncodeItem(buf, items); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ChunkInto returns the memory of dst as bytes if a chunk of its items
// can be received straight into it, else nil.
func ChunkInto[T any](dst []T) []byte {
	if RawChunks[T]() {
		return AsBytes(dst)
	}
	return nil
}

// DecodeChunk decodes an encoded chunk of exactly len(dst) items into dst.
func DecodeChunk[T any](b []byte, dst []T) error {
	if RawChunks[T]() {
		raw := AsBytes(dst)
		if len(b) != len(raw) {
			return fmt.Errorf("mp: a chunk of %d items of %T came as %d bytes, not %d", len(dst), *new(T), len(b), len(raw))
		}
		if len(raw) > 0 && &raw[0] != &b[0] {
			copy(raw, b)
		} // else received in place
		return nil
	}
	d := dst[:0:len(dst)]
	if err := dec.Unmarshal(b, &d); err != nil {
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

// ResultsInPlace returns where the results for the chunk as go: over as
// itself when raw Rs are no larger than raw As (result i then overwrites
// only items already read), so that a chunk's results need no fresh
// memory; else a new slice.
func ResultsInPlace[A, R any](as []A) []R {
	var a A
	var r R
	if len(as) == 0 || !RawChunks[A]() || !RawChunks[R]() || unsafe.Sizeof(r) > unsafe.Sizeof(a) ||
		uintptr(unsafe.Pointer(&as[0]))%unsafe.Alignof(r) != 0 {
		return make([]R, len(as))
	}
	return unsafe.Slice((*R)(unsafe.Pointer(&as[0])), len(as))
}

// DecodeChunkAny decodes an encoded chunk of any number of items. Raw
// items may alias b, which the caller gives up.
func DecodeChunkAny[T any](b []byte) ([]T, error) {
	if RawChunks[T]() {
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
		copy(AsBytes(out), b)
		return out, nil
	}
	if out, ok := decodeStrings[T](b); ok {
		return out, nil
	}
	var out []T
	err := dec.Unmarshal(b, &out)
	return out, err
}

// decodeStrings decodes a chunk of byte slices or strings in two passes
// over b: one that checks it and sums the lengths, one that copies the
// items into a single new array, which they share (an item kept by the
// target keeps that array). The codec would allocate each item, through
// reflection, which costs a worker more than the item's copy. It reports
// false for any other type or any encoding it does not expect (tags,
// text that is not UTF-8, a malformed chunk), which the codec then
// decodes or rejects.
func decodeStrings[T any](b []byte) ([]T, bool) {
	t := reflect.TypeFor[T]()
	var major byte
	switch {
	case HasOwnCodec(t):
		return nil, false
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		major = 2 // byte string
	case t.Kind() == reflect.String:
		major = 3 // text string
	default:
		return nil, false
	}
	n, rest, ok := cborHead(b, 4)
	if !ok || n > uint64(len(rest)) { // an item takes a byte at least
		return nil, false
	}
	total := 0
	for range n {
		if major == 2 && len(rest) > 0 && rest[0] == 0xf6 {
			rest = rest[1:] // null: a nil slice
			continue
		}
		l, r, ok := cborHead(rest, major)
		if !ok || l > uint64(len(r)) || major == 3 && !utf8.Valid(r[:l]) {
			return nil, false
		}
		total += int(l)
		rest = r[l:]
	}
	if len(rest) != 0 {
		return nil, false
	}
	out := make([]T, n)
	data := make([]byte, total)
	_, rest, _ = cborHead(b, 4)
	for i := range out {
		if major == 2 && rest[0] == 0xf6 {
			rest = rest[1:]
			continue
		}
		l, r, _ := cborHead(rest, major)
		item := data[:copy(data, r[:l]):l]
		data, rest = data[l:], r[l:]
		if major == 2 {
			*(*[]byte)(unsafe.Pointer(&out[i])) = item
		} else {
			// data is written only here, before the string exists.
			*(*string)(unsafe.Pointer(&out[i])) = unsafe.String(unsafe.SliceData(item), len(item))
		}
	}
	return out, true
}

// cborHead reads the head of a CBOR item of the major type major with a
// definite length or count, and returns that and the bytes after it.
func cborHead(b []byte, major byte) (uint64, []byte, bool) {
	m, arg, n, ok := ParseHead(b)
	if !ok || m != major {
		return 0, nil, false
	}
	return arg, b[n:], true
}

var inertTypes typeCache[bool]

// InertItems reports whether a copy of a T encodes as the T did, whatever
// happens afterwards to memory the T refers to: T is made of numbers,
// bools and strings (which never change), in arrays and structs, and
// does not encode itself.
func InertItems[T any]() bool {
	return inertTypes.get(reflect.TypeFor[T](), inert)
}

func inert(t reflect.Type) bool {
	if HasOwnCodec(t) {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return inert(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !inert(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// AsBytes views the elements of s as bytes (T is a fixed-size type, so it
// holds no pointers).
func AsBytes[T any](s []T) []byte {
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

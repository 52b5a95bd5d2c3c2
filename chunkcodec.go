//go:build linux

package mp

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/codec"
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
	return codec.EncodeArg(v)
}

// oneBytes returns the encoding of one result, written into buf.
func oneBytes[T any](buf *bytes.Buffer, v T) ([]byte, error) {
	if rawChunks[T]() {
		buf.Write(asBytes(unsafe.Slice(&v, 1)))
	} else if err := codec.EncodeItem(buf, v); err != nil {
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
	return codec.Unmarshal(b, v)
}

// encodeChunk encodes a chunk of items (a copy: the caller may reuse items).
func encodeChunk[T any](items []T) ([]byte, error) {
	if rawChunks[T]() {
		return bytes.Clone(asBytes(items)), nil
	}
	return codec.EncodeArg(items)
}

// chunkBytes returns the encoding of items: their own memory if they are
// raw, or else their CBOR encoding written into buf.
func chunkBytes[T any](buf *bytes.Buffer, items []T) ([]byte, error) {
	if rawChunks[T]() {
		return asBytes(items), nil
	}
	if err := codec.EncodeItem(buf, items); err != nil {
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
	if err := codec.Unmarshal(b, &d); err != nil {
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
	if out, ok := decodeStrings[T](b); ok {
		return out, nil
	}
	var out []T
	err := codec.Unmarshal(b, &out)
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
	case hasOwnCodec(t):
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
	m, arg, n, ok := codec.ParseHead(b)
	if !ok || m != major {
		return 0, nil, false
	}
	return arg, b[n:], true
}

// mapChunkBytes is about the most bytes of encoded items in a chunk of
// Map's default chunking. Python's rule alone (see defaultChunksize)
// makes chunks of an eighth of the items on two workers: 128 MiB each for
// a million items of 1 KiB, which a worker must receive whole before it
// starts, and which the pool holds encoded while it sends them (see
// Pool.sendTo). Smaller chunks cost more: each is a task with its round
// trip, and the worker decodes each into new memory (see decodeStrings),
// which the runtime gives back to the system the sooner the smaller its
// heap. On a 2-core VM, Map of 1 KiB and 64 KiB items took about 30%
// less CPU with chunks of 4 MiB than of 1 MiB, and no less with 8 MiB.
const mapChunkBytes = 4 << 20

// chunkEnds returns where the chunks of items end: every chunksize items
// if chunksize > 0; else as Python chooses (defaultChunksize), but with no
// more than about mapChunkBytes of encoded items each (one item at
// least). The sizes of strings and byte slices are their lengths; those of
// other types are estimated from a few items encoded. Chunks of a
// fixed-size type are not capped: Map sends them from the items' own
// memory, at no cost in memory.
func chunkEnds[T any](items []T, chunksize, workers int) []chunkEnd {
	n := len(items)
	capped := chunksize <= 0 && !rawChunks[T]()
	if chunksize <= 0 {
		chunksize = defaultChunksize(n, workers)
	}
	ends := make([]chunkEnd, 0, (n+chunksize-1)/chunksize)
	if !capped {
		for off := 0; off < n; off += chunksize {
			ends = append(ends, chunkEnd{end: min(off+chunksize, n)})
		}
		return ends
	}
	size := itemSize(items)
	for off := 0; off < n; {
		end, sum := off, 0
		for end < n && end-off < chunksize && (end == off || sum+size(end) <= mapChunkBytes) {
			sum += size(end)
			end++
		}
		ends = append(ends, chunkEnd{end: end, size: sum})
		off = end
	}
	return ends
}

// chunkEnd is where a chunk ends, and about how many bytes its items take
// encoded if chunkEnds measured them (else 0).
type chunkEnd struct{ end, size int }

// itemSize returns a function giving about how many bytes item i of
// items takes encoded.
func itemSize[T any](items []T) func(i int) int {
	t := reflect.TypeFor[T]()
	switch {
	case hasOwnCodec(t):
	case t.Kind() == reflect.String:
		return func(i int) int { return 9 + len(*(*string)(unsafe.Pointer(&items[i]))) }
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return func(i int) int { return 9 + len(*(*[]byte)(unsafe.Pointer(&items[i]))) }
	}
	// The mean size of up to 16 items spread over the slice.
	var buf bytes.Buffer
	k := min(len(items), 16)
	for j := range k {
		if codec.EncodeItem(&buf, items[j*len(items)/k]) != nil {
			break // Map fails on it when it is sent
		}
	}
	mean := max(buf.Len()/max(k, 1), 1)
	return func(int) int { return mean }
}

var inertTypes sync.Map // reflect.Type -> bool

// inertItems reports whether a copy of a T encodes as the T did, whatever
// happens afterwards to memory the T refers to: T is made of numbers,
// bools and strings (which never change), in arrays and structs, and
// does not encode itself.
func inertItems[T any]() bool {
	t := reflect.TypeFor[T]()
	if ok, found := inertTypes.Load(t); found {
		return ok.(bool)
	}
	ok := inert(t)
	inertTypes.Store(t, ok)
	return ok
}

func inert(t reflect.Type) bool {
	if hasOwnCodec(t) {
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

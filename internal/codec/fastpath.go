//go:build linux

package codec

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

// A fast path for the small messages most values are: a struct whose
// fields are all scalars (integers, floats, bools, strings, byte slices),
// or one such scalar alone. The CBOR library finds a struct's fields and
// matches a map's keys to them by reflection for every value, which costs
// more than the rest of a Pipe's round trip; here each such type gets a
// plan once (its fields' names, kinds and offsets), and values are written
// and read straight from their memory.
//
// The plan writes exactly the bytes the library writes for the same value
// (a map of the fields in their order under the same names, shortest
// integer heads, float64 and float32 at their width, NaN and infinities as
// the library's float16, nil byte slices as null): every reader, either
// path or another process's, reads the same message. It reads only that
// form back (the map's head and the keys byte for byte, in that order, no
// other key, no tag, definite lengths, the exact item types, values that
// fit, valid UTF-8, no NaN); anything else, including any error, is left
// to the library, which then decodes from the start into a value the
// fast path has not touched. What it decodes, the library decodes to the
// same value without error (TestFastPathMatchesLibrary, FuzzFastPath). Only enc's options are served this way (not
// det's, which shortens floats).

// A fastPlan says how to encode and decode one type.
type fastPlan struct {
	fields []fastField // in the struct's order, which is the library's; a scalar alone has one, without a key
	head   []byte      // the map's head (none for a scalar alone)
	fixed  int         // the most bytes the encoding takes besides strings' and byte slices' contents
}

// A fastField is one field of a plan.
type fastField struct {
	key  []byte // the encoded key (a text string)
	name string // the key's text
	kind reflect.Kind
	size uintptr // for integers: their width in bytes
	off  uintptr
}

// plainPlans are the plans of int, int64, string and float64 (see valueOf).
var plainPlans = []*fastPlan{
	buildPlan(reflect.TypeFor[int]()), buildPlan(reflect.TypeFor[int64]()),
	buildPlan(reflect.TypeFor[string]()), buildPlan(reflect.TypeFor[float64]()),
}

// planFor returns t's plan, or nil when values of t go through the
// library.
func planFor(t reflect.Type) *fastPlan {
	if t.Kind() == reflect.Pointer {
		return nil // its element's is infoOf(t).plan
	}
	return infoOf(t).plan
}

// The library's interfaces for types that encode or decode themselves:
// a struct implementing any of them has no plan.
var ownCodecs = []reflect.Type{
	reflect.TypeFor[cbor.Marshaler](), reflect.TypeFor[cbor.Unmarshaler](),
	reflect.TypeFor[encoding.BinaryMarshaler](), reflect.TypeFor[encoding.BinaryUnmarshaler](),
	reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](),
	reflect.TypeFor[json.Marshaler](), reflect.TypeFor[json.Unmarshaler](),
}

func buildPlan(t reflect.Type) *fastPlan {
	if isScalar(t) {
		return &fastPlan{fields: []fastField{{kind: t.Kind(), size: t.Size()}}, fixed: 9}
	}
	if t.Kind() != reflect.Struct || t.NumField() == 0 || isHandle(t) || t.PkgPath() == "time" ||
		t.PkgPath() == "math/big" || t.PkgPath() == reflect.TypeFor[cbor.Tag]().PkgPath() {
		return nil
	}
	for _, i := range ownCodecs {
		if reflect.PointerTo(t).Implements(i) {
			return nil
		}
	}
	p := &fastPlan{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous || f.Name == "_" {
			return nil // embedded fields and struct options: the library's rules are subtler
		}
		if !f.IsExported() {
			continue // the library ignores them too
		}
		tag := f.Tag.Get("cbor")
		if tag == "" {
			tag = f.Tag.Get("json") // as the library does
		}
		if tag == "-" {
			continue
		}
		if strings.Contains(tag, ",") || !isScalar(f.Type) {
			return nil // omitempty, keyasint...: left to the library
		}
		name := tag
		if name == "" {
			name = f.Name
		}
		if !utf8.ValidString(name) {
			return nil
		}
		for _, n := range names {
			if strings.EqualFold(n, name) {
				return nil // the library drops or matches such fields by its own rules
			}
		}
		names = append(names, name)
		key := AppendText(nil, name)
		p.fields = append(p.fields, fastField{key: key, name: name, kind: f.Type.Kind(), size: f.Type.Size(), off: f.Offset})
		p.fixed += len(key) + 9
	}
	if len(p.fields) == 0 {
		return nil
	}
	p.head = AppendHead(nil, MajorMap, uint64(len(p.fields)))
	p.fixed += len(p.head)
	return p
}

// isScalar reports whether t is a scalar the plans handle: a bool,
// integer, float, string or byte slice, without methods (a method could
// make the library treat it otherwise).
func isScalar(t reflect.Type) bool {
	if t.NumMethod() != 0 || reflect.PointerTo(t).NumMethod() != 0 {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem() == reflect.TypeFor[byte]()
	}
	return false
}

// valueOf returns the plan of the value v holds (or that v points to, if
// v is a pointer, isPtr) and the address of that value, or a nil plan.
func valueOf(v any) (p *fastPlan, addr unsafe.Pointer, isPtr bool) {
	// An interface holds a pointer to its value, or the pointer itself
	// when the value is a pointer: no type with a plan is pointer-shaped
	// (held in the interface's word), as each holds a scalar that is not
	// a pointer or a string, slice or several words.
	data := (*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1]
	// The commonest lone scalars skip the type cache: a type switch
	// costs less, and they are where the library is fastest.
	switch v.(type) {
	case int:
		return plainPlans[0], data, false
	case int64:
		return plainPlans[1], data, false
	case string:
		return plainPlans[2], data, false
	case float64:
		return plainPlans[3], data, false
	case *int, *int64, *string, *float64:
		if data == nil {
			return nil, nil, false
		}
		switch v.(type) {
		case *int:
			return plainPlans[0], data, true
		case *int64:
			return plainPlans[1], data, true
		case *string:
			return plainPlans[2], data, true
		}
		return plainPlans[3], data, true
	}
	t := reflect.TypeOf(v)
	if t == nil {
		return nil, nil, false
	}
	i := infoOf(t)
	if i.isPtr && data == nil {
		return nil, nil, false
	}
	return i.plan, data, i.isPtr
}

// appendFast appends v's encoding to dst if v has a plan.
func appendFast(dst []byte, v any) ([]byte, bool) {
	p, addr, _ := valueOf(v)
	if p == nil {
		return dst, false
	}
	n := p.fixed
	for _, f := range p.fields {
		switch f.kind {
		case reflect.String:
			n += len(*(*string)(unsafe.Add(addr, f.off)))
		case reflect.Slice:
			n += len(*(*[]byte)(unsafe.Add(addr, f.off)))
		}
	}
	if cap(dst)-len(dst) < n {
		dst = append(make([]byte, 0, len(dst)+n), dst...)
	}
	dst = append(dst, p.head...)
	for _, f := range p.fields {
		dst = appendScalar(append(dst, f.key...), f, unsafe.Add(addr, f.off))
	}
	return dst, true
}

// The library's encodings of NaN and the infinities (float16).
var (
	float16NaN    = []byte{0xf9, 0x7e, 0x00}
	float16PosInf = []byte{0xf9, 0x7c, 0x00}
	float16NegInf = []byte{0xf9, 0xfc, 0x00}
)

// The heads of floats.
const (
	headFloat32 = MajorSimple<<5 | 26
	headFloat64 = MajorSimple<<5 | 27
)

func appendScalar(b []byte, f fastField, p unsafe.Pointer) []byte {
	switch f.kind {
	case reflect.Bool:
		return AppendBool(b, *(*bool)(p))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return AppendInt(b, loadInt(p, f.size))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return AppendUint(b, loadUint(p, f.size))
	case reflect.Float32, reflect.Float64:
		x := float64(*(*float32)(p))
		if f.kind == reflect.Float64 {
			x = *(*float64)(p)
		}
		switch {
		case math.IsNaN(x):
			return append(b, float16NaN...)
		case math.IsInf(x, 1):
			return append(b, float16PosInf...)
		case math.IsInf(x, -1):
			return append(b, float16NegInf...)
		case f.kind == reflect.Float32:
			return binary.BigEndian.AppendUint32(append(b, headFloat32), math.Float32bits(*(*float32)(p)))
		}
		return binary.BigEndian.AppendUint64(append(b, headFloat64), math.Float64bits(x))
	case reflect.String:
		return AppendText(b, *(*string)(p))
	}
	bs := *(*[]byte)(p)
	if bs == nil {
		return append(b, Null)
	}
	return append(AppendHead(b, MajorBytes, uint64(len(bs))), bs...)
}

// loadInt loads a signed integer of size bytes: its bits, sign-extended.
func loadInt(p unsafe.Pointer, size uintptr) int64 {
	shift := 64 - 8*size
	return int64(loadUint(p, size)<<shift) >> shift
}

// loadUint loads an unsigned integer of size bytes.
func loadUint(p unsafe.Pointer, size uintptr) uint64 {
	switch size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(*(*uint32)(p))
	}
	return *(*uint64)(p)
}

// decodeFast decodes data into v, a pointer, if v's type has a plan and
// data is in the form the plan writes; it reports whether it did. When it
// did not, v is untouched.
func decodeFast(data []byte, v any) bool {
	p, addr, isPtr := valueOf(v)
	if p == nil || !isPtr {
		return false
	}
	// Everything is checked before anything is stored: the library, if it
	// is asked instead, must find v as it was. One field is stored last,
	// once checked; a few wait in got; more are checked in a first pass.
	switch {
	case len(p.fields) == 1:
		return p.parse(data, addr, nil, true)
	case len(p.fields) > len(fastPending{}):
		return p.parse(data, nil, nil, true) && p.parse(data, addr, nil, false)
	}
	var got fastPending
	if !p.parse(data, nil, &got, true) {
		return false
	}
	for i := range p.fields {
		got[i].store(&p.fields[i], unsafe.Add(addr, p.fields[i].off))
	}
	return true
}

// fastPending holds the values parsed for a plan of a few fields until
// all are known good; larger plans parse twice instead.
type fastPending [4]scalar

// A scalar is one parsed value.
type scalar struct {
	x    uint64 // an integer's, float's or bool's bits, as stored
	b    []byte // a string's or byte slice's contents, in the message
	null bool   // a nil byte slice
}

// parse checks that data is in the plan's form, storing the values into
// the value at addr if it is not nil or into got if it is not nil; each
// value is stored once it and all before it are checked, and the last
// once the message is known to end with it. check asks for the checks
// that need a pass over a string's contents, which a second pass can
// skip. The map's head and the keys are compared as the bytes the plan
// writes: another form of the same (a longer head) is left to the
// library.
func (p *fastPlan) parse(data []byte, addr unsafe.Pointer, got *fastPending, check bool) bool {
	b := data
	if len(b) < len(p.head) || string(b[:len(p.head)]) != string(p.head) {
		return false
	}
	b = b[len(p.head):]
	for i := range p.fields {
		f := &p.fields[i]
		if len(b) < len(f.key) || string(b[:len(f.key)]) != string(f.key) {
			return false
		}
		v, n, ok := parseScalar(b[len(f.key):], f, check)
		if !ok {
			return false
		}
		b = b[len(f.key)+n:]
		if i == len(p.fields)-1 && len(b) != 0 {
			return false
		}
		switch {
		case got != nil:
			got[i] = v
		case addr != nil:
			v.store(f, unsafe.Add(addr, f.off))
		}
	}
	return true
}

// parseScalar parses the item at the start of b as f's value and returns
// it and its length, or false when the item is not in the form
// appendScalar writes (or one the library reads to the same value, such
// as a longer head). check asks for the checks that need a pass over a
// string's contents (UTF-8).
func parseScalar(b []byte, f *fastField, check bool) (scalar, int, bool) {
	if len(b) == 0 {
		return scalar{}, 0, false
	}
	switch f.kind {
	case reflect.Bool:
		if b[0] != True && b[0] != False {
			return scalar{}, 0, false
		}
		return scalar{x: uint64(b[0] & 1)}, 1, true // True is odd, False even
	case reflect.Float64, reflect.Float32:
		return parseFloat(b, f.kind)
	case reflect.Slice:
		if b[0] == Null {
			return scalar{null: true}, 1, true
		}
	}
	major, arg, n, ok := ParseHead(b)
	if !ok {
		return scalar{}, 0, false
	}
	switch f.kind {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if arg > uint64(1)<<(8*f.size-1)-1 {
			return scalar{}, 0, false // out of range: the library says why
		}
		switch major {
		case MajorUint:
			return scalar{x: arg}, n, true
		case MajorNegInt:
			return scalar{x: uint64(-1 - int64(arg))}, n, true
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if major == MajorUint && (f.size == 8 || arg < uint64(1)<<(8*f.size)) {
			return scalar{x: arg}, n, true
		}
	case reflect.String, reflect.Slice:
		want := MajorText
		if f.kind == reflect.Slice {
			want = MajorBytes
		}
		if major != want || uint64(len(b)-n) < arg {
			return scalar{}, 0, false
		}
		s := b[n : n+int(arg)]
		if check && want == MajorText && !utf8.Valid(s) {
			return scalar{}, 0, false // the library's error
		}
		return scalar{b: s}, n + int(arg), true
	}
	return scalar{}, 0, false
}

// store stores v, parsed as f's value, at p.
func (v *scalar) store(f *fastField, p unsafe.Pointer) {
	switch f.kind {
	case reflect.Bool:
		*(*bool)(p) = v.x != 0
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		storeUint(p, f.size, v.x) // the low bytes of an int's two's complement
	case reflect.Float32:
		*(*float32)(p) = math.Float32frombits(uint32(v.x))
	case reflect.Float64:
		*(*float64)(p) = math.Float64frombits(v.x)
	case reflect.String:
		*(*string)(p) = string(v.b)
	default: // a byte slice
		if v.null {
			*(*[]byte)(p) = nil
		} else {
			// A copy: the message's memory is reused (the library copies
			// it too).
			*(*[]byte)(p) = append(make([]byte, 0, len(v.b)), v.b...)
		}
	}
}

// parseFloat parses a float32 or float64 item of the width appendScalar
// writes for kind (or a float32 into a float64, which converts exactly),
// as the bits of kind. NaNs and the float16 form are left to the library.
func parseFloat(b []byte, kind reflect.Kind) (scalar, int, bool) {
	switch {
	case b[0] == headFloat32 && len(b) >= 5:
		x := math.Float32frombits(binary.BigEndian.Uint32(b[1:]))
		if x != x {
			return scalar{}, 0, false
		}
		if kind == reflect.Float32 {
			return scalar{x: uint64(math.Float32bits(x))}, 5, true
		}
		return scalar{x: math.Float64bits(float64(x))}, 5, true
	case b[0] == headFloat64 && len(b) >= 9 && kind == reflect.Float64:
		x := math.Float64frombits(binary.BigEndian.Uint64(b[1:]))
		if x != x {
			return scalar{}, 0, false
		}
		return scalar{x: math.Float64bits(x)}, 9, true
	}
	return scalar{}, 0, false
}

func storeUint(p unsafe.Pointer, size uintptr, x uint64) {
	switch size {
	case 1:
		*(*uint8)(p) = uint8(x)
	case 2:
		*(*uint16)(p) = uint16(x)
	case 4:
		*(*uint32)(p) = uint32(x)
	default:
		*(*uint64)(p) = x
	}
}

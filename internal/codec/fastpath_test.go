//go:build linux

package codec

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The fast path's shapes, and types like them that it leaves to the
// library.

type allKinds struct {
	B   bool
	I   int
	I8  int8
	I16 int16
	I32 int32
	I64 int64
	U   uint
	U8  uint8
	U16 uint16
	U32 uint32
	U64 uint64
	F32 float32
	F64 float64
	S   string
	Bs  []byte
}

type (
	myInt   int32
	myBytes []byte
)

type tagged struct {
	A       myInt   `cbor:"a"`
	B       string  `json:"bee"`
	C       myBytes `cbor:"c" json:"ignored"`
	Skipped int     `cbor:"-"`
	hidden  int
	Last    float64
}

// Types without a plan: the library encodes them.
type (
	withOmit struct {
		A int `cbor:"a,omitempty"`
	}
	withArray struct {
		_ struct{} `cbor:",toarray"`
		A int
	}
	withEmbedded struct {
		smallMsg
		B int
	}
	withDuration struct{ D time.Duration }
	withPointer  struct{ P *int }
	withMap      struct{ M map[string]int }
	withFold     struct {
		A int `cbor:"x"`
		B int `cbor:"X"`
	}
	withMarshaler struct{ A int }
	onlyHidden    struct{ a int }
)

func (withMarshaler) MarshalText() ([]byte, error) { return []byte("m"), nil }

// sameValue compares two decoded values, floats by their bits.
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float()) ||
			(a.Float() != a.Float() && b.Float() != b.Float())
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return false
		}
		return bytes.Equal(a.Bytes(), b.Bytes())
	}
	return a.Equal(b)
}

// checkEncode compares the fast path's encoding of v with the library's,
// and decodes those bytes through both into fresh values and into values
// already holding prev.
func checkEncode(t *testing.T, v, prev any) {
	t.Helper()
	want, err := enc.Marshal(v)
	if err != nil {
		t.Fatalf("library encode of %#v: %v", v, err)
	}
	got, ok := appendFast(nil, v)
	if !ok {
		t.Fatalf("no fast path for %T", v)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encode %#v:\nfast    %x\nlibrary %x", v, got, want)
	}
	checkDecode(t, want, reflect.TypeOf(v), prev)
}

// checkDecode decodes data into a new value of type typ (one holding prev
// if prev is not nil) through the fast path and the library: if the fast
// path decodes, the library must decode it without error to the same
// value; if not, the value must be untouched.
func checkDecode(t *testing.T, data []byte, typ reflect.Type, prev any) {
	t.Helper()
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	fast, lib := reflect.New(typ), reflect.New(typ)
	if prev != nil {
		fast.Elem().Set(reflect.ValueOf(prev))
		lib.Elem().Set(reflect.ValueOf(prev))
	}
	before := reflect.New(typ)
	before.Elem().Set(fast.Elem())
	ok := decodeFast(data, fast.Interface())
	libErr := dec.Unmarshal(data, lib.Interface())
	if !ok {
		if !sameValue(fast.Elem(), before.Elem()) {
			t.Fatalf("decode %x into %s: the fast path declined but changed the value to %#v", data, typ, fast.Elem())
		}
		// Through Unmarshal, the library decides: the same value and error.
		again := reflect.New(typ)
		again.Elem().Set(before.Elem())
		err := Unmarshal(data, again.Interface())
		if fmt.Sprint(err) != fmt.Sprint(libErr) || !sameValue(again.Elem(), lib.Elem()) {
			t.Fatalf("decode %x into %s: Unmarshal gives %#v, %v; the library %#v, %v", data, typ, again.Elem(), err, lib.Elem(), libErr)
		}
		return
	}
	if libErr != nil {
		t.Fatalf("decode %x into %s: the fast path decoded %#v, the library failed: %v", data, typ, fast.Elem(), libErr)
	}
	if !sameValue(fast.Elem(), lib.Elem()) {
		t.Fatalf("decode %x into %s:\nfast    %#v\nlibrary %#v", data, typ, fast.Elem(), lib.Elem())
	}
}

// TestFastPathMatchesLibrary encodes values of every kind the fast path
// serves, at the edges of each head width and integer range, through the
// fast path and the library: the bytes are equal, and both decode them
// (into fresh values and values already set) to equal values.
func TestFastPathMatchesLibrary(t *testing.T) {
	ints := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1,
		math.MaxInt8, math.MinInt8, math.MaxInt16, math.MinInt16, math.MaxInt32, math.MinInt32,
		math.MaxInt64, math.MinInt64, -1, -24, -25, -256, -257, -65536, -65537}
	uints := []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	floats := []float64{0, math.Copysign(0, -1), 1.5, -2.25, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.MaxFloat32, math.SmallestNonzeroFloat32, 1e300, math.NaN(), math.Inf(1), math.Inf(-1), 0.1}
	strs := []string{"", "hello", "héllo ☃", strings.Repeat("x", 23), strings.Repeat("y", 24),
		strings.Repeat("z", 300), strings.Repeat("w", 70000), "\xff\xfe"}
	byteses := [][]byte{nil, {}, {0}, bytes.Repeat([]byte{7}, 24), bytes.Repeat([]byte{9}, 300)}
	prev := allKinds{B: true, I: 5, S: "old", Bs: []byte("old"), F64: 3}

	for i := range max(len(ints), len(uints), len(floats), len(strs), len(byteses)) {
		n, u, f := ints[i%len(ints)], uints[i%len(uints)], floats[i%len(floats)]
		v := allKinds{
			B: i%2 == 0, I: int(n), I8: int8(n), I16: int16(n), I32: int32(n), I64: n,
			U: uint(u), U8: uint8(u), U16: uint16(u), U32: uint32(u), U64: u,
			F32: float32(f), F64: f, S: strs[i%len(strs)], Bs: byteses[i%len(byteses)],
		}
		checkEncode(t, v, nil)
		checkEncode(t, &v, prev)
		checkEncode(t, n, nil)
		checkEncode(t, int8(n), nil)
		checkEncode(t, uint16(u), nil)
		checkEncode(t, u, nil)
		checkEncode(t, f, nil)
		checkEncode(t, float32(f), nil)
		checkEncode(t, v.S, nil)
		checkEncode(t, v.Bs, []byte("old"))
		checkEncode(t, v.B, nil)
		checkEncode(t, tagged{A: myInt(n), B: v.S, C: v.Bs, Skipped: 9, hidden: 8, Last: f}, tagged{Skipped: 1, hidden: 2})
		checkEncode(t, myInt(n), nil)
		checkEncode(t, &smallMsg{ID: int(n), Payload: v.S}, smallMsg{ID: 3, Payload: "x"})
	}
}

// TestFastPathPlans checks which types the fast path serves: structs of
// scalars and scalars, not types the library treats in ways the plan does
// not (options, embedding, methods, other kinds), which still encode
// through the library.
func TestFastPathPlans(t *testing.T) {
	for _, v := range []any{smallMsg{}, allKinds{}, tagged{}, 0, "", []byte(nil), myBytes(nil), true, 1.5, float32(1)} {
		if planFor(reflect.TypeOf(v)) == nil {
			t.Errorf("no plan for %T", v)
		}
	}
	for _, v := range []any{withOmit{A: 1}, withArray{A: 1}, withEmbedded{B: 1}, withDuration{D: 5}, withPointer{},
		withMap{}, withFold{A: 1, B: 2}, withMarshaler{A: 1}, onlyHidden{}, struct{}{}, time.Duration(1),
		[]int{1}, [2]byte{}, map[string]int{}, uintptr(1), complex(1, 2), any(nil), time.Time{}} {
		if v != nil && planFor(reflect.TypeOf(v)) != nil {
			t.Errorf("a plan for %T", v)
		}
		if _, ok := appendFast(nil, v); ok {
			t.Errorf("the fast path encodes %T", v)
		}
		got, err := Marshal(v)
		want, werr := enc.Marshal(v)
		if !bytes.Equal(got, want) || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Errorf("Marshal(%T) = %x, %v; the library %x, %v", v, got, err, want, werr)
		}
	}
	var nilMsg *smallMsg
	if _, ok := appendFast(nil, nilMsg); ok {
		t.Error("the fast path encodes a nil pointer")
	}
	if decodeFast([]byte{0x01}, nil) || decodeFast([]byte{0x01}, 1) || decodeFast([]byte{0x01}, (*int)(nil)) {
		t.Error("the fast path decodes into something that is not a pointer to a value")
	}
}

// TestFastPathServesSmallMessages checks that pipe_rtt's message and a
// lone scalar, the most common messages, take the fast path both ways
// through EncodeMessage and DecodeMessage, and that a message decodes
// with no allocation but its string's.
func TestFastPathServesSmallMessages(t *testing.T) {
	msg := &smallMsg{ID: 1, Payload: "hello"}
	want, _ := enc.Marshal(msg)
	got, fds, err := EncodeMessage(msg)
	if err != nil || fds != nil || !bytes.Equal(got, want) {
		t.Fatalf("EncodeMessage = %x, %v, %v; want %x", got, fds, err, want)
	}
	var back smallMsg
	if !decodeFast(got, &back) {
		t.Fatalf("the fast path does not decode %x", got)
	}
	if _, err := DecodeMessage(got, nil, &back); err != nil || back != *msg {
		t.Fatalf("DecodeMessage = %+v, %v", back, err)
	}
	if n := testing.AllocsPerRun(100, func() { DecodeMessage(got, nil, &back) }); n > 1 {
		t.Errorf("decoding a small message allocates %v times, want 1 (its string)", n)
	}
	var i int
	if b, _, _ := EncodeMessage(-7); !decodeFast(b, &i) || i != -7 {
		t.Errorf("the fast path does not serve a lone int: %x -> %d", b, i)
	}
}

// TestFastPathFallback gives the decoder the message in forms other than
// the one the fast path writes, and malformed: each is left to the
// library (which gives the same value or error as it always did), and the
// fast path leaves the value as it was, also when it read part of it.
func TestFastPathFallback(t *testing.T) {
	good, _ := enc.Marshal(smallMsg{ID: 300, Payload: "hello"})
	hexes := map[string]string{
		"reordered":       "a2677061796c6f616465686968626964182a",
		"unknown key":     "a3626964182a677061796c6f616465686968627a7a01",
		"missing key":     "a1626964182a",
		"case":            "a2624944182a677061796c6f61646568656c6c6f",
		"tagged value":    "a2626964c1182a677061796c6f61646568656c6c6f",
		"tagged message":  "d9d9f7a2626964182a677061796c6f61646568656c6c6f",
		"indefinite text": "a2626964182a677061796c6f61647f6268656c6c6fff",
		"indefinite map":  "bf626964182a677061796c6f61646568656c6c6fff",
		"long head":       "b8026269641900ff677061796c6f61646568656c6c6f",
		"bad utf8":        "a2626964182a677061796c6f61646268ff",
		"null string":     "a2626964182a677061796c6f6164f6",
		"bytes for text":  "a2626964182a677061796c6f61644568656c6c6f",
		"float for int":   "a2626964fb3ff0000000000000677061796c6f61646568656c6c6f",
		"huge int":        "a26269641bffffffffffffffff677061796c6f61646568656c6c6f",
		"huge neg int":    "a26269643bffffffffffffffff677061796c6f61646568656c6c6f",
		"duplicate key":   "a2626964182a626964182b",
		"huge length":     "a2626964182a677061796c6f61647bffffffffffffffff",
		"trailing byte":   fmt.Sprintf("%x00", good),
		"empty":           "",
		"truncated":       fmt.Sprintf("%x", good[:len(good)-1]),
	}
	prev := smallMsg{ID: 1, Payload: "before"}
	for name, h := range hexes {
		var data []byte
		if _, err := fmt.Sscanf(h, "%x", &data); err != nil && h != "" {
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(name, func(t *testing.T) {
			checkDecode(t, data, reflect.TypeFor[smallMsg](), prev)
			checkDecode(t, data, reflect.TypeFor[allKinds](), allKinds{S: "x"})
			checkDecode(t, data, reflect.TypeFor[int](), 5)
			checkDecode(t, data, reflect.TypeFor[string](), "s")
		})
	}
}

// FuzzFastPath encodes values made of the fuzzer's inputs through both
// paths (equal bytes), and decodes the fuzzer's raw bytes through both
// into every shape (equal values, or the fast path declines and touches
// nothing).
func FuzzFastPath(f *testing.F) {
	f.Add(int64(1), uint64(2), 1.5, "hello", []byte("x"), true, []byte{0xa2, 0x62, 0x69, 0x64, 0x01, 0x67, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x65, 0x68, 0x65, 0x6c, 0x6c, 0x6f})
	f.Add(int64(-1000), uint64(math.MaxUint64), math.NaN(), "", []byte(nil), false, []byte{0x01})
	for _, v := range []any{allKinds{Bs: []byte{}}, tagged{}, -5, "s", []byte{1}} {
		b, _ := enc.Marshal(v)
		f.Add(int64(0), uint64(0), 0.0, "", []byte{}, false, b)
	}
	f.Fuzz(func(t *testing.T, n int64, u uint64, x float64, s string, bs []byte, flag bool, raw []byte) {
		if flag && len(bs) == 0 {
			bs = nil
		}
		v := allKinds{B: flag, I: int(n), I8: int8(n), I16: int16(n >> 8), I32: int32(n >> 16), I64: n,
			U: uint(u), U8: uint8(u), U16: uint16(u >> 8), U32: uint32(u >> 16), U64: u,
			F32: float32(x), F64: x, S: s, Bs: bs}
		checkEncode(t, v, nil)
		checkEncode(t, &smallMsg{ID: int(n), Payload: s}, smallMsg{})
		checkEncode(t, tagged{A: myInt(n), B: s, C: bs, Last: x}, nil)
		checkEncode(t, n, nil)
		checkEncode(t, s, nil)
		checkEncode(t, bs, nil)
		checkEncode(t, float32(x), nil)
		for _, typ := range []reflect.Type{reflect.TypeFor[smallMsg](), reflect.TypeFor[allKinds](), reflect.TypeFor[tagged](),
			reflect.TypeFor[int8](), reflect.TypeFor[uint32](), reflect.TypeFor[int](), reflect.TypeFor[float32](),
			reflect.TypeFor[float64](), reflect.TypeFor[string](), reflect.TypeFor[[]byte](), reflect.TypeFor[bool]()} {
			checkDecode(t, raw, typ, nil)
		}
		checkDecode(t, raw, reflect.TypeFor[smallMsg](), smallMsg{ID: 9, Payload: "p"})
	})
}

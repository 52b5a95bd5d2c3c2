//go:build linux

package pickle

import (
	"encoding/hex"
	"math"
	"testing"

	ogórek "github.com/kisielk/og-rek"
)

// requestSeeds are requests as CPython 3.11's manager proxies pickle
// them (ForkingPickler.dumps((ident, name, args, {}))), and shapes
// DecodeRequest must leave to Decode.
var requestSeeds = []string{
	// ('7f3a2b1c', '__setitem__', (42, 12345), {})
	"8004952600000000000000288c083766336132623163948c0b5f5f7365746974656d5f5f944b2a4d393086947d9474942e",
	// ('7f3a2b1c', '__getitem__', (42,), {})
	"8004952300000000000000288c083766336132623163948c0b5f5f6765746974656d5f5f944b2a85947d9474942e",
	// ('7f3a2b1c', '__len__', (), {})
	"8004951c00000000000000288c083766336132623163948c075f5f6c656e5f5f94297d9474942e",
	// ('7f3a2b1c', '__setitem__', ('k', 'k'), {}): the second 'k' is a memo get
	"8004952700000000000000288c083766336132623163948c0b5f5f7365746974656d5f5f948c016b94680286947d9474942e",
	// ('7f3a2b1c', 'get', ('k', None), {'default': 1}): keyword arguments
	"8004952b00000000000000288c083766336132623163948c03676574948c016b944e86947d948c0764656661756c74944b017374942e",
}

// TestDecodeRequestMatchesDecode: what DecodeRequest reads, Decode reads
// to the same values; kinds it leaves to Decode (memo gets, keyword
// arguments, a long int, bytes, a nested tuple, 4 arguments, protocol 2,
// a frame of the wrong length, trailing bytes, a str that is not UTF-8)
// are refused.
func TestDecodeRequestMatchesDecode(t *testing.T) {
	type want struct {
		name string
		args ogórek.Tuple
		kw   *Dict
		fast bool
	}
	cases := []want{
		{"__setitem__", ogórek.Tuple{int64(42), int64(12345)}, &Dict{}, true},
		{"__getitem__", ogórek.Tuple{"key"}, &Dict{}, true},
		{"__len__", ogórek.Tuple{}, &Dict{}, true},
		{"put", ogórek.Tuple{nil, true, false}, &Dict{}, true},
		{"set", ogórek.Tuple{int64(-7), 1.5, "é"}, &Dict{}, true},
		{"set", ogórek.Tuple{int64(math.MinInt32), int64(math.MaxInt32)}, &Dict{}, true},
		{"get", ogórek.Tuple{"k"}, dict("default", int64(1)), false},
		{"set", ogórek.Tuple{int64(1) << 40}, &Dict{}, false},
		{"set", ogórek.Tuple{ogórek.Bytes("b")}, &Dict{}, false},
		{"set", ogórek.Tuple{ogórek.Tuple{int64(1)}}, &Dict{}, false},
		{"set", ogórek.Tuple{int64(1), int64(2), int64(3), int64(4)}, &Dict{}, false},
	}
	var r Request
	for _, c := range cases {
		data, err := Encode(ogórek.Tuple{"7f3a", c.name, c.args, c.kw}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := DecodeRequest(data, &r)
		if got != c.fast {
			t.Fatalf("DecodeRequest(%s%v, %v) = %v, want %v", c.name, c.args, c.kw, got, c.fast)
		}
		if got {
			checkRequest(t, data, &r)
		}
	}
	for i, s := range requestSeeds {
		data, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := DecodeRequest(data, &r); got != (i < 3) {
			t.Fatalf("CPython's request %d: DecodeRequest = %v", i, got)
		} else if got {
			checkRequest(t, data, &r)
		}
	}
	good, _ := hex.DecodeString(requestSeeds[0])
	for what, data := range map[string][]byte{
		"protocol 2":      append([]byte{0x80, 2}, good[2:]...),
		"a short frame":   append(append([]byte{}, good[:3]...), append([]byte{0x25}, good[4:]...)...),
		"trailing bytes":  append(append([]byte{}, good...), '.'),
		"a cut":           good[:len(good)-1],
		"no UTF-8 ident":  []byte("\x80\x04(\x8c\x02\xff\xfe\x8c\x01g)}t."),
		"no UTF-8 arg":    []byte("\x80\x04(\x8c\x01i\x8c\x01g\x8c\x01\xff\x85}t."),
		"a mark in args":  []byte("\x80\x04(\x8c\x01i\x8c\x01g(K\x01t}t."),
		"the wrong tuple": []byte("\x80\x04(\x8c\x01i\x8c\x01gK\x01\x86}t."),
	} {
		if DecodeRequest(data, &r) {
			t.Fatalf("DecodeRequest read %s", what)
		}
	}
}

// checkRequest fails unless r, read from data by DecodeRequest, is what
// Decode reads from data.
func checkRequest(t *testing.T, data []byte, r *Request) {
	t.Helper()
	v, err := Decode(data, Options{})
	if err != nil {
		t.Fatalf("DecodeRequest read %x, which Decode refuses: %v", data, err)
	}
	fast := ogórek.Tuple{r.Ident, r.Name, ogórek.Tuple(append([]any{}, r.Args[:r.NArgs]...)), &Dict{}}
	if !same(v, fast) {
		t.Fatalf("%x: DecodeRequest read %#v, Decode %#v", data, fast, v)
	}
}

// TestDecodeRequestKeepsStrs: requests on one object that alternate
// between a few methods cost no allocation for their ident and names
// (nor for small ints).
func TestDecodeRequestKeepsStrs(t *testing.T) {
	get, _ := hex.DecodeString(requestSeeds[1])
	length, _ := hex.DecodeString(requestSeeds[2])
	var r Request
	if !DecodeRequest(get, &r) || !DecodeRequest(length, &r) {
		t.Fatal("refused")
	}
	if n := testing.AllocsPerRun(100, func() {
		DecodeRequest(get, &r)
		DecodeRequest(length, &r)
	}); n != 0 {
		t.Fatalf("%v allocations for two requests on one object", n)
	}
	if r.Name != "__len__" || r.Ident != "7f3a2b1c" {
		t.Fatalf("read %q %q", r.Ident, r.Name)
	}
}

// FuzzDecodeRequest: DecodeRequest never panics, and what it reads
// Decode reads to the same values.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if DecodeRequest(data, &r) {
			checkRequest(t, data, &r)
		}
	})
}

// TestAppendEncodePairMatchesEncode: AppendEncodePair writes what Encode
// writes for the tuple, and refuses what it refuses.
func TestAppendEncodePairMatchesEncode(t *testing.T) {
	for _, v := range []any{nil, true, false, int64(0), int64(255), int64(256), int64(65536), int64(-1),
		int64(math.MaxInt64), int64(math.MinInt64), 1.5, "", "é", string(make([]byte, 300)),
		ogórek.Tuple{int64(1), "a"}, []any{nil}, ogórek.NewDict(), ogórek.Bytes("b"), "\xff", int(7), struct{}{}} {
		want, werr := Encode(ogórek.Tuple{"#RETURN", v}, Options{})
		got, gerr := AppendEncodePair([]byte("xy"), "#RETURN", v, Options{})
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%#v: Encode's error %v, AppendEncodePair's %v", v, werr, gerr)
		}
		if werr == nil && string(got) != "xy"+string(want) {
			t.Fatalf("%#v: AppendEncodePair wrote %x, Encode %x", v, got[2:], want)
		}
	}
	if _, err := AppendEncodePair(nil, "\xff", nil, Options{}); err == nil {
		t.Fatal("a tag that is not UTF-8 was written")
	}
}

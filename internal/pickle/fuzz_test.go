//go:build linux

package pickle

import (
	"errors"
	"testing"

	ogórek "github.com/kisielk/og-rek"
)

// fuzzOpts are small limits, so that the fuzzer reaches them.
var fuzzOpts = Options{
	MaxSize:   1 << 16,
	MaxDepth:  40,
	MaxMemo:   64,
	MaxValues: 5000,
	Allow:     []ogórek.Class{{Module: "m", Name: "C"}},
}

// FuzzDecode: Decode never panics or hangs; what it accepts respects the
// limits (depth and values met by a walk), encodes, and decodes back to
// the same value; what it refuses is refused with a typed error.
func FuzzDecode(f *testing.F) {
	for _, k := range kinds {
		if b, err := Encode(k.want, Options{}); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02\x8c\x01a\x94h\x02e.",
		"\x80\x04\x8c\x01m\x8c\x01C\x93)\x81}\x8c\x01k\x94K\x01sb.",
		"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
		"(lp0\nI1\naL12345678901234567890L\naF1.5\naVh\\u00e9\naS'x\\n'\na(dp1\nI2\nNs.",
		"\x80\x04N" + "2\x86" + "2\x86" + "2\x86.",
		"\x80\x04]\x94h\x00a.",
		"\x80\x05\x96\x03\x00\x00\x00\x00\x00\x00\x00abc.",
		"\x80\x04\x8b\x04\x00\x00\x00\xff\xff\xff\xff.",
		"\x80\x04}\x94(N\x85\x94K\x01\x8c\x01m\x8c\x01C\x93N\x85R\x94K\x02u.",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data, fuzzOpts)
		if err != nil {
			var fe *FormatError
			var le *LimitError
			var xe *ForbiddenError
			if !errors.As(err, &fe) && !errors.As(err, &le) && !errors.As(err, &xe) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		n, depth := walk(v, 0)
		if n > int64(fuzzOpts.MaxValues) || depth > fuzzOpts.MaxDepth {
			t.Fatalf("accepted %d values %d deep", n, depth)
		}
		b, err := Encode(v, fuzzOpts)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", v, err)
		}
		w, err := Decode(b, fuzzOpts)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)): %v", v, err)
		}
		if !same(v, w) {
			t.Fatalf("round trip: %#v became %#v", v, w)
		}
		// Into never panics, whatever the destination.
		for _, dst := range []any{new(any), new(map[any]any), new([]any), new(map[string][]int), new(struct{ A, B int }), new([2]string), new(map[int]bool)} {
			Into(v, dst)
		}
	})
}

// walk counts the values in v and the depth of its containers, as a
// consumer walking it would meet them.
func walk(v any, depth int) (n int64, deepest int) {
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case ogórek.Tuple:
		items = x
	case Set:
		items = x
	case FrozenSet:
		items = x
	case ogórek.Call:
		items = x.Args
	case *Object:
		items = append(append([]any{}, x.Args...), x.State)
	case *Dict:
		for k, v := range x.All() {
			items = append(items, k, v)
		}
	default:
		return 1, depth
	}
	n, deepest = 1, depth+1
	for _, it := range items {
		m, d := walk(it, depth+1)
		n += m
		deepest = max(deepest, d)
	}
	return n, deepest
}

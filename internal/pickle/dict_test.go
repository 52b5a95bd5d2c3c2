//go:build linux

package pickle

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-mp/mp/internal/pytest"
	ogórek "github.com/kisielk/og-rek"
)

// permutations returns every order of items.
func permutations(items []any) [][]any {
	if len(items) <= 1 {
		return [][]any{append([]any{}, items...)}
	}
	var out [][]any
	for i := range items {
		rest := append(append([]any{}, items[:i]...), items[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]any{items[i]}, p...))
		}
	}
	return out
}

// rawDict is the pickle of a dict holding pairs in that order, as CPython
// writes one (EMPTY_DICT, then MARK ... SETITEMS), made without Encode's
// dict writer: each key and value is pickled alone and spliced in.
func rawDict(t *testing.T, pairs [][2]any) []byte {
	t.Helper()
	b := []byte{opProto, 4, opEmptyDict, opMark}
	for _, p := range pairs {
		for _, v := range p {
			e, err := Encode(v, Options{})
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, e[2:len(e)-1]...) // without PROTO and STOP
		}
	}
	return append(b, opSetItems, opStop)
}

// pyDictOrder compares, for each line "raw<TAB>roundtrip", the items of
// the two dicts in order, and prints them.
const pyDictOrder = `
import pickle, sys
for line in sys.stdin:
    a, b = (pickle.loads(bytes.fromhex(h)) for h in line.split())
    ia, ib = list(a.items()), list(b.items())
    same = ia == ib and [type(k) for k in a] == [type(k) for k in b]
    print('ok' if same else 'FAIL %r, round trip %r' % (ia, ib))
`

// TestDictOrderRoundTrip: a dict decoded and encoded again holds its
// pairs in the order of the pickle, as CPython's dict does, for every
// order of int, str, tuple, None and float keys; a key the pickle repeats
// (the same, or an equal one: 3.0 for 3) keeps its first place and takes
// the last value. CPython loads both pickles and compares their items in
// order.
func TestDictOrderRoundTrip(t *testing.T) {
	keys := []any{int64(3), "b", ogórek.Tuple{int64(1), "x"}, nil, "a", 2.5}
	var in strings.Builder
	perms := permutations(keys)
	for _, perm := range perms {
		var pairs [][2]any
		for i, k := range perm {
			pairs = append(pairs, [2]any{k, int64(i)})
		}
		pairs = append(pairs, [2]any{perm[1], "again"}, [2]any{3.0, "three"})
		raw := rawDict(t, pairs)
		v, err := Decode(raw, Options{})
		if err != nil {
			t.Fatalf("%x: %v", raw, err)
		}
		back, err := Encode(v, Options{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&in, "%x %x\n", raw, back)
	}
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		out := strings.Split(strings.TrimSpace(string(pytest.Run(t, py, []byte(in.String()), pyDictOrder))), "\n")
		if len(out) != len(perms) {
			t.Fatalf("%d answers from python, want %d", len(out), len(perms))
		}
		bad := 0
		for i, o := range out {
			if o != "ok" {
				if bad++; bad <= 3 {
					t.Errorf("keys %v: %s", perms[i], o)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%d of %d orders lost", bad, len(perms))
		}
	})
}

// TestIntoDict: a decoded dict stored in any, *Dict or Dict keeps its
// pairs in order (a Dict is not filled as a struct of its fields), and
// Get finds a key as Python compares keys.
func TestIntoDict(t *testing.T) {
	raw := rawDict(t, [][2]any{{"b", int64(1)}, {int64(2), "x"}, {nil, 2.5}, {2.0, "y"}})
	v, err := Decode(raw, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{ogórek.Tuple{"b", int64(1)}, ogórek.Tuple{int64(2), "y"}, ogórek.Tuple{ogórek.None{}, 2.5}}
	var a any
	var p *Dict
	var d Dict
	for _, dst := range []any{&a, &p, &d} {
		if err := Into(v, dst); err != nil {
			t.Fatalf("Into %T: %v", dst, err)
		}
	}
	for i, got := range []*Dict{a.(*Dict), p, &d} {
		if !sameAll(pairs(got), want) {
			t.Errorf("#%d: got %v, want %v", i, got, want)
		}
		if x, ok := got.Get(true); ok || x != nil {
			t.Errorf("#%d: Get(True) = %v, %v", i, x, ok)
		}
		if x, ok := got.Get(2.0); !ok || x != "y" {
			t.Errorf("#%d: Get(2.0) = %v, %v", i, x, ok)
		}
	}
}

// TestIntoDictCopies: a Dict value that Into fills is a copy: a key set
// in it is neither in the decoded dict nor in another Dict filled from
// it (they shared the index of its keys, and found the new key at a
// place their pairs do not have).
func TestIntoDictCopies(t *testing.T) {
	v, err := Decode(rawDict(t, [][2]any{{"a", int64(1)}}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var x, y Dict
	for _, dst := range []*Dict{&x, &y} {
		if err := Into(v, dst); err != nil {
			t.Fatal(err)
		}
	}
	x.Set("b", int64(2))
	if got, ok := x.Get("b"); !ok || got != int64(2) || x.Len() != 2 {
		t.Errorf("the Dict set: Get(b) = %v, %v; %d pairs", got, ok, x.Len())
	}
	for i, d := range []*Dict{v.(*Dict), &y} {
		if got, ok := d.Get("b"); ok || d.Len() != 1 {
			t.Errorf("#%d: Get(b) = %v, %v; %d pairs; want only a", i, got, ok, d.Len())
		}
	}
}

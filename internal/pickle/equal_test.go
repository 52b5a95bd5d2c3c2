//go:build linux

package pickle

import (
	"bytes"
	"math/big"
	"reflect"

	ogórek "github.com/kisielk/og-rek"
)

// same compares two values of the value model as Python would compare
// what they stand for, and their kinds too: sets ignore order; dicts
// (*Dict) must hold their pairs in the same order, which Python's ==
// ignores but Decode and Encode keep.
func same(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || x != x && y != y) // NaN is NaN
	case *big.Int:
		y, ok := b.(*big.Int)
		return ok && x.Cmp(y) == 0
	case []any:
		y, ok := b.([]any)
		return ok && sameAll(x, y)
	case ogórek.Tuple:
		y, ok := b.(ogórek.Tuple)
		return ok && sameAll(x, y)
	case Set:
		y, ok := b.(Set)
		return ok && sameUnordered(x, y)
	case FrozenSet:
		y, ok := b.(FrozenSet)
		return ok && sameUnordered(x, y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case *Dict:
		y, ok := b.(*Dict)
		return ok && sameAll(pairs(x), pairs(y))
	case *Object:
		y, ok := b.(*Object)
		return ok && x.Class == y.Class && x.New == y.New && sameAll(x.Args, y.Args) && same(x.State, y.State)
	case ogórek.Call:
		y, ok := b.(ogórek.Call)
		return ok && x.Callable == y.Callable && sameAll(x.Args, y.Args)
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && a == b
}

func sameAll(x, y []any) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !same(x[i], y[i]) {
			return false
		}
	}
	return true
}

func sameUnordered(x, y []any) bool {
	if len(x) != len(y) {
		return false
	}
	used := make([]bool, len(y))
outer:
	for _, a := range x {
		for j, b := range y {
			if !used[j] && same(a, b) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// dict makes a Dict of key, value, key, value...
func dict(kv ...any) *Dict {
	d := &Dict{}
	for i := 0; i < len(kv); i += 2 {
		d.Set(kv[i], kv[i+1])
	}
	return d
}

func bigInt(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 0)
	if !ok {
		panic(s)
	}
	return v
}

// pairs returns the pairs of d, in order, as tuples.
func pairs(d *Dict) []any {
	var out []any
	for k, v := range d.All() {
		out = append(out, ogórek.Tuple{k, v})
	}
	return out
}

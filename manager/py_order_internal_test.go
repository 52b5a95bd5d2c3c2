//go:build linux

package manager

import (
	"errors"
	"math"
	"testing"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
)

// ordered makes a pickle.Dict of key, value, key, value... in that order.
func ordered(kv ...any) *pickle.Dict {
	d := &pickle.Dict{}
	for i := 0; i < len(kv); i += 2 {
		d.Set(kv[i], kv[i+1])
	}
	return d
}

// TestSameStored: stored values that differ only in the order of the
// pairs of their maps, also in maps in arrays, maps and tags, are equal;
// others, malformed ones among them, are not.
func TestSameStored(t *testing.T) {
	enc := func(v any) []byte {
		b, err := encodePy(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ba := enc(ordered("b", int64(1), "a", int64(2)))
	ab := enc(ordered("a", int64(2), "b", int64(1)))
	if string(ba) == string(ab) {
		t.Fatal("a dict is stored in sorted order, not its own")
	}
	for _, c := range []struct {
		a, b any
		want bool
	}{
		{ordered("b", int64(1), "a", int64(2)), ordered("a", int64(2), "b", int64(1)), true},
		{[]any{int64(1), ordered("b", int64(1), "a", ordered("d", nil, "c", true))}, []any{int64(1), ordered("a", ordered("c", true, "d", nil), "b", int64(1))}, true},
		{ogórek.Tuple{ordered("y", "z", "x", "w")}, []any{ordered("x", "w", "y", "z")}, true},
		{ordered("b", int64(1), "a", int64(2)), ordered("a", int64(1), "b", int64(2)), false},
		{ordered("b", int64(1), "a", int64(2)), []any{"b", int64(1), "a", int64(2)}, false},
		{ordered("b", "a"), ordered("a", "b"), false},
		{"ab", "ba", false},
	} {
		if got := sameStored(enc(c.a), enc(c.b)); got != c.want {
			t.Errorf("sameStored(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	// The same in a tag (a set holding a tuple is an array in tag 258; a
	// map in a tag is what a Go type with a tag may store).
	tagged := func(b []byte) []byte { return append(codec.AppendHead(nil, codec.MajorTag, 1000), b...) }
	if !sameStored(tagged(ba), tagged(ab)) {
		t.Error("maps in a tag in another order are not the same")
	}
	if sameStored(ba[:len(ba)-1], ab[:len(ab)-1]) {
		t.Error("truncated maps are the same")
	}
}

// TestPyDictKeysOneInTheManager: a dict with two keys that Python holds
// apart but the manager would store as one (two NaNs) is refused with a
// ValueError, not stored as a map that repeats a key.
func TestPyDictKeysOneInTheManager(t *testing.T) {
	d := ordered("a", int64(0), math.NaN(), int64(1), math.NaN(), int64(2))
	if d.Len() != 3 {
		t.Fatalf("the dict holds %d keys, want 3", d.Len())
	}
	b, err := appendPy(nil, []byte("x"), d, 0)
	var ve *pyValueError
	if !errors.As(err, &ve) || string(b) != "x" {
		t.Fatalf("appendPy of a dict of two NaN keys: %q, %v; want a *pyValueError and nothing appended", b, err)
	}
}

// TestGoComparesPythonDicts: a dict a Python client stores in a list or a
// Value keeps its order in the store, and a Go client's Index, Count,
// Remove and CompareAndSwap find it with a map (which Go encodes sorted),
// as Python's == ignores the order; the Go client reads it as a map.
func TestGoComparesPythonDicts(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	l, err := NewList[map[string]int](ctx, m, nil, Named("l"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValue[map[string]int](ctx, m, nil, Named("v"))
	if err != nil {
		t.Fatal(err)
	}
	p := proxyConn(t, m)
	ba := ordered("b", int64(1), "a", int64(2))
	for _, c := range []struct{ name, method string }{{"l", "append"}, {"l", "append"}, {"v", "set"}} {
		if kind, r := p.call(pyNamedIdent(t, m, c.name), c.method, ba); kind != "#RETURN" {
			t.Fatalf("%s.%s: %s %#v", c.name, c.method, kind, r)
		}
	}
	ab := map[string]int{"a": 2, "b": 1}
	if i, err := l.Index(ctx, ab); err != nil || i != 0 {
		t.Errorf("Index = %d, %v; want 0", i, err)
	}
	if n, err := l.Count(ctx, ab); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
	if ok, err := l.Remove(ctx, ab); err != nil || !ok {
		t.Errorf("Remove = %v, %v; want true", ok, err)
	}
	if got, err := l.Get(ctx, 0); err != nil || len(got) != 2 || got["a"] != 2 || got["b"] != 1 {
		t.Errorf("Get(0) = %v, %v", got, err)
	}
	if ok, err := v.CompareAndSwap(ctx, ab, map[string]int{"c": 3}); err != nil || !ok {
		t.Errorf("CompareAndSwap = %v, %v; want true", ok, err)
	}
}

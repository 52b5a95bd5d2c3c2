//go:build linux

package manager

import (
	"math"
	"math/big"
	"testing"
	"time"

	ogórek "github.com/kisielk/og-rek"
)

// pyHostileArgs are arguments a played Python client passes to every
// method: the ends of int64 and past them, odd floats, slices at the
// ends, containers, and names of attributes.
func pyHostileArgs() []any {
	huge := new(big.Int).Lsh(big.NewInt(1), 70)
	slice := func(lo, hi, step any) ogórek.Call {
		return ogórek.Call{Callable: pySliceClass, Args: ogórek.Tuple{lo, hi, step}}
	}
	return []any{
		nil, true, int64(0), int64(-1), int64(2), int64(1 << 62), int64(math.MaxInt64), int64(math.MinInt64),
		huge, new(big.Int).Neg(huge), math.NaN(), math.Inf(-1), -1e300, "", "__class__",
		ogórek.Bytes("b"), []any{int64(1), "x"}, ogórek.Tuple{int64(1), int64(2)}, ogórek.NewDict(),
		slice(nil, nil, int64(math.MinInt64)), slice(int64(1), nil, int64(math.MaxInt64)),
		slice("a", nil, nil),
	}
}

// TestPythonMethodMatrix calls every method of every kind a Python
// client can reach with none, one and two of pyHostileArgs, and with
// each of them as a keyword argument: each call is answered (or waits,
// as a blocking call may: its connection is then dropped), the server
// never falls over, and a Go client's objects are intact at the end.
// (It finds the panics of TestPythonListRepeatBounds and
// TestPythonSliceStepsAtTheEnds.)
func TestPythonMethodMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of calls")
	}
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	d, err := NewDict[string, int](ctx, m, Named("d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	args := pyHostileArgs()
	var calls, waited int

	// The public functions, each on a connection of its own, as CPython
	// sends them.
	public := func(name string, a ...any) {
		p := dialPy(t, m)
		p.send(mustEncode(t, ogórek.Tuple{nil, name, ogórek.Tuple(a), ogórek.NewDict()}))
		calls++
		if ok, err := p.c.Poll(10 * time.Second); err != nil || !ok {
			t.Fatalf("%s%v: no reply (%v)", name, a, err)
		}
		if _, err := p.c.RecvBytes(0); err != nil {
			t.Fatalf("%s%v: %v", name, a, err)
		}
		p.c.Close()
	}
	for typeid := range pyKinds {
		public("create", typeid)
		for _, a := range args {
			public("create", typeid, a)
			for _, b := range []any{nil, int64(2), "d", []any{1.5}} {
				public("create", typeid, a, b)
				public("create", typeid, b, a)
			}
		}
	}
	for _, name := range []string{"incref", "decref", "get_methods", "dummy", "number_of_objects", "debug_info"} {
		for _, a := range args {
			public(name, a)
		}
	}
	for typeid, kind := range pyKinds {
		create := []any{typeid}
		switch typeid {
		case "Value":
			create = append(create, "i", int64(1))
		case "Array":
			create = append(create, "d", []any{1.5, 2.5, 3.5})
		case "Barrier":
			create = append(create, int64(2))
		case "list":
			create = append(create, []any{int64(1), int64(2), int64(3)})
		}
		k, v := dialPy(t, m).call(nil, "create", create...)
		if k != "#RETURN" {
			t.Fatalf("create %s: %s %#v", typeid, k, v)
		}
		id := v.(ogórek.Tuple)[0].(string)
		var p *pyConn
		for _, method := range append(pyExposedOf[kind], "#GETVALUE", "__repr__", "__str__") {
			call := func(kw ogórek.Dict, a ...any) {
				if p == nil {
					p = proxyConn(t, m)
				}
				p.send(mustEncode(t, ogórek.Tuple{id, method, ogórek.Tuple(a), kw}))
				calls++
				// Replies take microseconds: a call still unanswered after
				// this waits, or nearly so (dropping it costs nothing).
				if ok, err := p.c.Poll(100 * time.Millisecond); err != nil || !ok {
					waited++ // a call that waits: drop it with its connection
					p.c.Close()
					p = nil
					return
				}
				if _, err := p.c.RecvBytes(0); err != nil {
					t.Fatalf("%s.%s%v: %v", typeid, method, a, err)
				}
			}
			try := func(a ...any) { call(ogórek.NewDict(), a...) }
			try()
			for _, a := range args {
				try(a)
				for _, b := range args {
					try(a, b)
				}
				for _, name := range []string{"n", "timeout", "value", "key"} {
					kw := ogórek.NewDict()
					kw.Set(name, a)
					call(kw)
				}
			}
		}
		if p != nil {
			p.c.Close()
		}
	}
	t.Logf("%d calls, %d of which waited", calls, waited)
	if v, ok, err := d.Get(ctx, "k"); err != nil || !ok || v != 1 {
		t.Fatalf("the Go client's dict after the matrix: %v %v %v", v, ok, err)
	}
}

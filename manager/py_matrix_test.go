//go:build linux

package manager

import (
	"context"
	"math"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/pickle"
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
		for _, method := range slices.Concat(pyExposedOf[kind], []string{"#GETVALUE", "__repr__", "__str__"}) {
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

// FuzzPythonCall sends method calls with fuzzed integers, strs and
// slices, each on a proxy connection of its own, to a live server with an
// object of each SyncManager typeid: the server must neither crash nor
// stop serving.
func FuzzPythonCall(f *testing.F) {
	l, err := connection.Listen("unix", "", nil)
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{Python: true}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	f.Cleanup(func() {
		s.Shutdown()
		<-served
	})
	addr := l.Addr().String()
	dial := func(t testing.TB) *mp.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := connection.Dial(ctx, "unix", addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// call sends a request on c and returns the reply, nil if none came
	// within wait.
	call := func(t testing.TB, c *mp.Conn, req ogórek.Tuple, wait time.Duration) []byte {
		b, err := pickle.Encode(req, pickle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendBytes(b); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.Poll(wait); err != nil || !ok {
			return nil
		}
		reply, err := c.RecvBytes(0)
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	var kinds []string
	var ids []string
	for typeid := range pyKinds {
		create := ogórek.Tuple{typeid}
		switch typeid {
		case "Value":
			create = append(create, "i", int64(1))
		case "Array":
			create = append(create, "q", []any{int64(1), int64(2), int64(3)})
		case "Barrier":
			create = append(create, int64(2))
		case "list":
			create = append(create, []any{int64(1), "x", 2.5})
		}
		c := dial(f)
		reply := call(f, c, ogórek.Tuple{nil, "create", create, ogórek.NewDict()}, 10*time.Second)
		c.Close()
		v, err := pickle.Decode(reply, pickle.Options{})
		t, ok := v.(ogórek.Tuple)
		if err != nil || !ok || len(t) != 2 || t[0] != "#RETURN" {
			f.Fatalf("create %s: %v %#v", typeid, err, v)
		}
		kinds = append(kinds, pyKinds[typeid])
		ids = append(ids, t[1].(ogórek.Tuple)[0].(string))
	}
	f.Add(uint8(0), uint8(0), uint8(1), int64(1), int64(2), int64(1), "k")
	f.Add(uint8(1), uint8(2), uint8(3), int64(1), int64(math.MaxInt64), int64(math.MaxInt64), "")
	f.Add(uint8(1), uint8(5), uint8(2), int64(1<<62), int64(-1), int64(0), "x")
	f.Fuzz(func(t *testing.T, obj, method, mode uint8, a, b, step int64, str string) {
		str = strings.ToValidUTF8(str, "?") // a Python str
		k := int(obj) % len(ids)
		methods := slices.Concat(pyExposedOf[kinds[k]], []string{"#GETVALUE", "__repr__"})
		name := methods[int(method)%len(methods)]
		slice := ogórek.Call{Callable: pySliceClass, Args: ogórek.Tuple{a, b, step}}
		var args ogórek.Tuple
		switch mode % 8 {
		case 1:
			args = ogórek.Tuple{a}
		case 2:
			args = ogórek.Tuple{a, b}
		case 3:
			args = ogórek.Tuple{slice}
		case 4:
			args = ogórek.Tuple{slice, []any{str, b}}
		case 5:
			args = ogórek.Tuple{str}
		case 6:
			args = ogórek.Tuple{str, a}
		case 7:
			args = ogórek.Tuple{a, []any{str, b}}
		}
		kw := ogórek.NewDict()
		if mode&8 != 0 {
			kw.Set(str, a)
		}
		c := dial(t)
		defer c.Close()
		if call(t, c, ogórek.Tuple{nil, "accept_connection", ogórek.Tuple{"fuzz"}, ogórek.NewDict()}, 10*time.Second) == nil {
			t.Fatal("no reply to accept_connection")
		}
		call(t, c, ogórek.Tuple{ids[k], name, args, kw}, 20*time.Millisecond)
		// The server still serves: a dict's __len__ on another
		// connection.
		c2 := dial(t)
		defer c2.Close()
		call(t, c2, ogórek.Tuple{nil, "accept_connection", ogórek.Tuple{"check"}, ogórek.NewDict()}, 10*time.Second)
		if call(t, c2, ogórek.Tuple{ids[0], "__repr__", ogórek.Tuple{}, ogórek.NewDict()}, 10*time.Second) == nil {
			t.Fatal("the server stopped serving")
		}
	})
}

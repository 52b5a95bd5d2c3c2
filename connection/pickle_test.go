//go:build linux

package connection_test

import (
	"context"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/pytest"
	ogórek "github.com/kisielk/og-rek"
)

// pyPickle is a CPython peer speaking pickle through Connection.send and
// recv. It listens (argv[2] == 'listen', printing its address) or
// connects to argv[3]; then it runs the commands named in argv[4:]:
//
//	values  send every value of VALUES twice (Go decodes each into any,
//	        then into a typed destination), then, for each message Go
//	        sends until 'END', answer with type name and repr
//	evil    send an os.system reduce, then 'after'
//	raw     send each hex pickle read from stdin lines as raw bytes,
//	        each followed by the str 'next'
//	echo    send dicts of every order of five keys, nested in dicts and
//	        lists, each followed by 'END', and check that what comes back
//	        has the same repr (the same order); print how many did not
const pyPickle = `
import os, sys
from multiprocessing.connection import Listener, Client
key = bytes.fromhex(sys.argv[1])
if sys.argv[2] == 'listen':
    l = Listener(('127.0.0.1', 0), authkey=key)
    print('%s:%d' % l.address, flush=True)
    c = l.accept()
else:
    host, port = sys.argv[3].rsplit(':', 1)
    c = Client((host, int(port)), authkey=key)
VALUES = [None, True, 7, 2**100, -2**70, 1.5, 'héllo', b'\x00b', bytearray(b'ba'),
          [1, 'a'], (1, 2), {'a': 1, 'b': 2}, {1, 2}, frozenset({3}),
          {'name': 'x', 'n': 3, 'tags': ['a', 'b'], 'extra': None}]
class RunShell:
    def __reduce__(self):
        return (os.system, ('touch ' + sys.argv[-1],))
for cmd in sys.argv[4:]:
    if cmd == 'values':
        for v in VALUES:
            c.send(v)
            c.send(v)
        while True:
            v = c.recv()
            if v == 'END':
                break
            c.send('%s %r' % (type(v).__name__, v))
    elif cmd == 'evil':
        c.send(RunShell())
        c.send('after')
    elif cmd == 'echo':
        import itertools
        bad = 0
        for perm in itertools.permutations(['a', 1, (1, None), None, 2.5]):
            inner = dict(zip(perm, range(5)))
            v = {perm[0]: inner, 'list': [dict(zip(reversed(perm), 'abcde')), inner], perm[3]: (inner,)}
            c.send(v)
            back = c.recv()
            if repr(back) != repr(v):
                bad += 1
                if bad == 1:
                    print('sent %r, got %r' % (v, back), flush=True)
        c.send('END')
        print('lost %d' % bad, flush=True)
    elif cmd == 'raw':
        for line in sys.stdin:
            c.send_bytes(bytes.fromhex(line.strip()))
            c.send('next')
c.close()
print('DONE', flush=True)
`

type record struct {
	Name  string   `pickle:"name"`
	N     int      `pickle:"n"`
	Tags  []string `pickle:"tags"`
	Extra *int     `pickle:"extra"`
}

type pyPoint struct {
	X, Y   int
	Label  string `pickle:"label"`
	Hidden int    `pickle:"-"`
}

// pickleConns runs f against a CPython peer, once with Python listening
// and Go dialling, once the other way round, for every interpreter.
func pickleConns(t *testing.T, f func(t *testing.T, c *mp.Conn, p *pyProc), cmds ...string) {
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		marker := filepath.Join(t.TempDir(), "ran")
		args := append(append([]string{}, cmds...), marker)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		t.Run("python listens", func(t *testing.T) {
			p := startPy(t, py.Path, pyPickle, append([]string{hex.EncodeToString(testKey), "listen", "-"}, args...)...)
			c, err := connection.Dial(ctx, "tcp", p.line(t), testKey, connection.WithPickle())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f(t, c, p)
			checkNotRun(t, marker)
		})
		t.Run("go listens", func(t *testing.T) {
			l, err := connection.Listen("tcp", "", testKey, connection.WithPickle())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			p := startPy(t, py.Path, pyPickle, append([]string{hex.EncodeToString(testKey), "dial", l.Addr().String()}, args...)...)
			c, err := l.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f(t, c, p)
			checkNotRun(t, marker)
		})
	})
}

func checkNotRun(t *testing.T, marker string) {
	t.Helper()
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the peer's os.system ran")
	}
}

func recvAny(t *testing.T, c *mp.Conn) any {
	t.Helper()
	var v any = "unset"
	if err := c.Recv(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPickleValues exchanges every value kind with CPython's send and
// recv, both ways: Go receives each Python value into any and into a
// typed destination, and Python reports the type and repr of each value
// Go sends.
func TestPickleValues(t *testing.T) {
	pickleConns(t, func(t *testing.T, c *mp.Conn, p *pyProc) {
		big100 := new(big.Int).Lsh(big.NewInt(1), 100)
		minus70 := new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 70))
		for _, want := range []struct {
			anyV  any
			typed any // a pointer to a destination
			check any // what it must hold
		}{
			{nil, new(*int), (*int)(nil)},
			{true, new(bool), true},
			{int64(7), new(uint8), uint8(7)},
			{big100, new(*big.Int), big100},
			{minus70, new(big.Int), *minus70},
			{1.5, new(float32), float32(1.5)},
			{"héllo", new(string), "héllo"},
			{ogórek.Bytes("\x00b"), new([]byte), []byte("\x00b")},
			{[]byte("ba"), new([2]byte), [2]byte{'b', 'a'}},
			{[]any{int64(1), "a"}, new([]any), []any{int64(1), "a"}},
			{ogórek.Tuple{int64(1), int64(2)}, new([]int), []int{1, 2}},
			{nil, new(map[string]int), map[string]int{"a": 1, "b": 2}},
			{connection.Set{int64(1), int64(2)}, new(map[int]struct{}), map[int]struct{}{1: {}, 2: {}}},
			{connection.FrozenSet{int64(3)}, new([]int64), []int64{3}},
			{nil, new(record), record{Name: "x", N: 3, Tags: []string{"a", "b"}}},
		} {
			got := recvAny(t, c)
			if _, isDict := got.(*connection.Dict); !isDict && !equalValue(got, want.anyV) {
				t.Errorf("Recv into any: got %#v, want %#v", got, want.anyV)
			}
			if err := c.Recv(want.typed); err != nil {
				t.Fatalf("Recv into %T: %v", want.typed, err)
			}
			if got := reflect.ValueOf(want.typed).Elem().Interface(); !equalValue(got, want.check) {
				t.Errorf("Recv into %T: got %#v, want %#v", want.typed, got, want.check)
			}
		}
		for _, s := range []struct {
			v    any
			want string
		}{
			{nil, "NoneType None"},
			{(*pyPoint)(nil), "NoneType None"},
			{false, "bool False"},
			{int64(1) << 62, "int 4611686018427387904"},
			{uint64(1) << 63, "int 9223372036854775808"},
			{big100, "int 1267650600228229401496703205376"},
			{minus70, "int -1180591620717411303424"},
			{float32(0.5), "float 0.5"},
			{"héllo", "str 'héllo'"},
			{ogórek.Bytes("\x00b"), `bytes b'\x00b'`},
			{[]byte("ba"), "bytearray bytearray(b'ba')"},
			{[]int{1, 2}, "list [1, 2]"},
			{ogórek.Tuple{1, "a"}, "tuple (1, 'a')"},
			{map[string]int{"a": 1}, "dict {'a': 1}"},
			{orderedDict("b", 1, "a", ogórek.None{}, ogórek.None{}, 2), "dict {'b': 1, 'a': None, None: 2}"},
			{connection.Set{1, 2}, "set {1, 2}"},
			{connection.FrozenSet{"x"}, "frozenset frozenset({'x'})"},
			{pyPoint{X: 1, Y: 2, Label: "p", Hidden: 3}, "dict {'X': 1, 'Y': 2, 'label': 'p'}"},
			{&record{Name: "r", Tags: []string{}}, "dict {'name': 'r', 'n': 0, 'tags': [], 'extra': None}"},
		} {
			if err := c.Send(s.v); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := c.Recv(&got); err != nil {
				t.Fatal(err)
			}
			if got != s.want {
				t.Errorf("Send(%#v): python got %s, want %s", s.v, got, s.want)
			}
		}
		if err := c.Send("END"); err != nil {
			t.Fatal(err)
		}
		if line := p.line(t); line != "DONE" {
			t.Fatalf("python: %q", line)
		}
	}, "values")
}

// orderedDict makes a Dict of key, value, key, value... in that order.
func orderedDict(kv ...any) *connection.Dict {
	d := &connection.Dict{}
	for i := 0; i < len(kv); i += 2 {
		d.Set(kv[i], kv[i+1])
	}
	return d
}

func equalValue(a, b any) bool {
	if x, ok := a.(*big.Int); ok {
		y, ok := b.(*big.Int)
		return ok && x.Cmp(y) == 0
	}
	if x, ok := a.(big.Int); ok {
		y, ok := b.(big.Int)
		return ok && x.Cmp(&y) == 0
	}
	return reflect.DeepEqual(a, b)
}

// TestPickleDictOrder: dicts that a CPython peer sends, received into
// any and sent back, come back in their order, nested ones too, as
// CPython's dicts keep it.
func TestPickleDictOrder(t *testing.T) {
	pickleConns(t, func(t *testing.T, c *mp.Conn, p *pyProc) {
		for {
			v := recvAny(t, c)
			if v == "END" {
				break
			}
			if err := c.Send(v); err != nil {
				t.Fatal(err)
			}
		}
		if line := p.line(t); line != "lost 0" {
			t.Fatalf("python: %s; %s", line, p.line(t))
		}
		if line := p.line(t); line != "DONE" {
			t.Fatalf("python: %q", line)
		}
	}, "echo")
}

// TestPickleRefused: a CPython peer sends an os.system reduce; Recv
// returns a *ForbiddenError naming it, nothing runs (the file the command
// would create does not appear), and the next message arrives.
func TestPickleRefused(t *testing.T) {
	pickleConns(t, func(t *testing.T, c *mp.Conn, p *pyProc) {
		var v any
		err := c.Recv(&v)
		var fe *connection.ForbiddenError
		if !errors.As(err, &fe) || fe.Module != "posix" || fe.Name != "system" {
			t.Fatalf("got %#v, %v; want a ForbiddenError for posix.system", v, err)
		}
		var s string
		if err := c.Recv(&s); err != nil || s != "after" {
			t.Fatalf("next message: %q, %v", s, err)
		}
		if line := p.line(t); line != "DONE" {
			t.Fatalf("python: %q", line)
		}
	}, "evil")
}

// TestPickleBombs: a CPython peer sends pickle bombs as raw messages;
// each Recv fails with a typed error, and the message after it arrives
// (the stream stays in step). Mismatched destinations fail likewise.
func TestPickleBombs(t *testing.T) {
	bombs := []struct {
		name, hex string
		check     func(error) bool
	}{
		{"nesting", hex.EncodeToString([]byte(strings.Repeat("]", 5000) + strings.Repeat("a", 4999) + ".")), isLimit("depth")},
		{"BINUNICODE8 length", "80048d00000000000000407800", isLimit("length")},
		{"LONG4 length", "80048bffffff7f78", isLimit("length")},
		{"shared tuples", hex.EncodeToString([]byte("\x80\x04N" + strings.Repeat("2\x86", 60) + ".")), isLimit("values")},
		{"memo", hex.EncodeToString([]byte("\x80\x04N" + strings.Repeat("\x94", 1<<20+1) + ".")), isLimit("memo")},
		{"cycle", "80045d946800612e", isFormat},
		{"garbage", "deadbeef", isFormat},
		{"str into int", hex.EncodeToString([]byte("\x80\x04\x8c\x01x.")), isMismatch},
		{"2**70 into int", "80048a09000000000000000040" + "2e", isMismatch},
	}
	var in strings.Builder
	for _, b := range bombs {
		in.WriteString(b.hex + "\n")
	}
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p := startPyStdin(t, py.Path, in.String(), pyPickle, hex.EncodeToString(testKey), "listen", "-", "raw", "-")
		c, err := connection.Dial(ctx, "tcp", p.line(t), testKey, connection.WithPickle())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, b := range bombs {
			var err error
			if strings.HasSuffix(b.name, "into int") {
				var n int64
				err = c.Recv(&n)
			} else {
				var v any
				err = c.Recv(&v)
			}
			if !b.check(err) {
				t.Errorf("%s: got %v", b.name, err)
			}
			var s string
			if err := c.Recv(&s); err != nil || s != "next" {
				t.Fatalf("after %s: %q, %v", b.name, s, err)
			}
		}
		if line := p.line(t); line != "DONE" {
			t.Fatalf("python: %q", line)
		}
	})
}

func isLimit(what string) func(error) bool {
	return func(err error) bool {
		var le *connection.LimitError
		return errors.As(err, &le) && le.What == what
	}
}

func isFormat(err error) bool {
	var fe *connection.FormatError
	return errors.As(err, &fe)
}

func isMismatch(err error) bool {
	var me *connection.MismatchError
	return errors.As(err, &me)
}

// TestPickleSendError: a value with no Python counterpart fails with an
// *EncodeError and sends nothing: the next value is the next message.
func TestPickleSendError(t *testing.T) {
	l, err := connection.Listen("unix", "", testKey, connection.WithPickle())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := connection.Dial(ctx, "unix", l.Addr().String(), testKey, connection.WithPickle())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var ee *connection.EncodeError
	if err := a.Send(make(chan int)); !errors.As(err, &ee) {
		t.Fatalf("Send(chan): %v, want an EncodeError", err)
	}
	if err := a.Send(map[string][]int{"k": {1}}); err != nil {
		t.Fatal(err)
	}
	var got map[string][]int
	if err := b.Recv(&got); err != nil || !reflect.DeepEqual(got, map[string][]int{"k": {1}}) {
		t.Fatalf("got %v, %v", got, err)
	}
}

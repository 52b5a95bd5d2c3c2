//go:build linux

package pickle

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/go-mp/mp/internal/pytest"
	ogórek "github.com/kisielk/og-rek"
)

// pyEvil prints, one per line and in hex, pickles that would run code or
// build arbitrary objects in CPython, at protocols 0, 2 and 4.
const pyEvil = `
import os, pickle, collections, datetime
class RunShell:
    def __reduce__(self):
        return (os.system, ('touch ' + __import__('sys').argv[1],))
class Evil:
    def __reduce__(self):
        return (eval, ('1+1',))
for v in (RunShell(), Evil(), collections.OrderedDict(a=1), datetime.date(2020, 1, 1), [1, {'k': RunShell()}]):
    for p in (0, 2, 4):
        print(pickle.dumps(v, protocol=p).hex())
`

// TestForbiddenFromPython decodes pickles CPython makes of os.system
// reduces and other classes: each is refused with a *ForbiddenError naming
// the global, and nothing runs (the file os.system would create is not
// there).
func TestForbiddenFromPython(t *testing.T) {
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		marker := t.TempDir() + "/ran"
		out := pytest.Run(t, py, nil, pyEvil, marker)
		lines := strings.Fields(string(out))
		wants := []string{"posix.system", "builtins.eval", "collections.OrderedDict", "datetime.date", "posix.system"}
		if len(lines) != 3*len(wants) {
			t.Fatalf("%d pickles from python", len(lines))
		}
		for i, h := range lines {
			data, _ := hex.DecodeString(h)
			v, err := Decode(data, Options{})
			var fe *ForbiddenError
			if !errors.As(err, &fe) {
				t.Fatalf("pickle %d: got %#v, %v; want a *ForbiddenError", i, v, err)
			}
			want := wants[i/3]
			if i/3 == 1 && fe.Module == "__builtin__" {
				want = "__builtin__.eval" // protocols 0-2 spell builtins so
			}
			if got := fe.Module + "." + fe.Name; got != want {
				t.Errorf("pickle %d: refused %s, want %s", i, got, want)
			}
		}
		if _, err := statFile(marker); err == nil {
			t.Fatal("os.system ran")
		}
	})
}

// TestForbiddenOpcodes covers the other ways out of a pickle: INST and
// OBJ naming a class, persistent ids, the extension registry, out-of-band
// buffers.
func TestForbiddenOpcodes(t *testing.T) {
	for _, c := range []struct {
		name, pickle string
		module, gl   string
	}{
		{"INST", "(S'touch x'\nios\nsystem\n.", "os", "system"},
		{"OBJ", "(cos\nsystem\nS'x'\no.", "os", "system"},
		{"GLOBAL alone", "csubprocess\nPopen\n.", "subprocess", "Popen"},
		{"STACK_GLOBAL", "\x80\x04\x8c\x02os\x8c\x06system\x93.", "os", "system"},
		{"NEWOBJ", "\x80\x04\x8c\x08builtins\x8c\x06object\x93)\x81.", "builtins", "object"},
		{"persistent id", "Pfoo\n.", "", "persistent id"},
		{"binary persistent id", "\x80\x02K\x01Q.", "", "persistent id"},
		{"EXT1", "\x80\x02\x82\x01.", "", "extension registry"},
		{"EXT4", "\x80\x02\x84\x01\x00\x00\x00.", "", "extension registry"},
		{"NEXT_BUFFER", "\x80\x05\x97.", "", "out-of-band buffer"},
	} {
		_, err := Decode([]byte(c.pickle), Options{})
		var fe *ForbiddenError
		if !errors.As(err, &fe) || fe.Module != c.module || fe.Name != c.gl {
			t.Errorf("%s: got %v, want ForbiddenError{%q, %q}", c.name, err, c.module, c.gl)
		}
	}
}

var token = ogórek.Class{Module: "multiprocessing.managers", Name: "Token"}

const pyToken = `
import sys, pickle
from multiprocessing.managers import Token
from multiprocessing.reduction import ForkingPickler
if sys.argv[1] == 'dump':
    t = Token('dict', ('127.0.0.1', 5000), '7f01')
    print(bytes(ForkingPickler.dumps([t, KeyError('k')])).hex())
else:
    t, e = ForkingPickler.loads(bytes.fromhex(sys.stdin.read()))
    print(type(t).__name__, t.typeid, t.address, t.id, type(e).__name__, e.args)
`

// TestAllowedClasses decodes a manager Token and an exception with their
// classes allowed (as the manager protocol needs) into *Object and
// ogórek.Call, refuses them otherwise, and encodes them back for CPython.
func TestAllowedClasses(t *testing.T) {
	keyError := ogórek.Class{Module: "builtins", Name: "KeyError"}
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		data, _ := hex.DecodeString(strings.TrimSpace(string(pytest.Run(t, py, nil, pyToken, "dump"))))
		var fe *ForbiddenError
		if _, err := Decode(data, Options{Allow: []ogórek.Class{keyError}}); !errors.As(err, &fe) || fe.Name != "Token" {
			t.Fatalf("Token not allowed: got %v, want a ForbiddenError for it", err)
		}
		opts := Options{Allow: []ogórek.Class{token, keyError}}
		v, err := Decode(data, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := []any{
			&Object{Class: token, Args: ogórek.Tuple{}, New: true,
				State: ogórek.Tuple{"dict", ogórek.Tuple{"127.0.0.1", int64(5000)}, "7f01"}},
			ogórek.Call{Callable: keyError, Args: ogórek.Tuple{"k"}},
		}
		if !same(v, want) {
			t.Fatalf("got %#v, want %#v", v, want)
		}
		b, err := Encode(v, opts)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSpace(string(pytest.Run(t, py, []byte(hex.EncodeToString(b)), pyToken, "load")))
		if w := "Token dict ('127.0.0.1', 5000) 7f01 KeyError ('k',)"; got != w {
			t.Fatalf("python loaded %q, want %q", got, w)
		}
	})
}

func limitErr(t *testing.T, err error, what string) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || le.What != what {
		t.Fatalf("got %v, want a *LimitError for %s", err, what)
	}
}

func formatErr(t *testing.T, err error, msg string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, msg) {
		t.Fatalf("got %v, want a *FormatError saying %q", err, msg)
	}
}

// nested returns a pickle of n lists, each in the one before.
func nested(n int) []byte {
	return []byte(strings.Repeat("]", n) + strings.Repeat("a", n-1) + ".")
}

// TestBombs feeds pickles made to exhaust memory or time: each is refused
// with a typed error before anything of the announced size is allocated
// (the allocations of a refusal are counted), or decoded into a value a
// walk of which is bounded.
func TestBombs(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		_, err := Decode(make([]byte, 101), Options{MaxSize: 100})
		limitErr(t, err, "size")
	})
	for _, c := range []struct{ name, pickle string }{
		{"BINUNICODE8", "\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40x."},
		{"BINBYTES8", "\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xffx."},
		{"BYTEARRAY8", "\x80\x05\x96\x00\x00\x00\x00\x01\x00\x00\x00x."},
		{"BINUNICODE", "\x80\x04X\xff\xff\xff\xffx."},
		{"BINBYTES", "\x80\x04B\xff\xff\xff\x7fx."},
		{"LONG4", "\x80\x04\x8b\xff\xff\xff\x7fx."},
		{"FRAME", "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x10N."},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(5, func() { _, err = Decode([]byte(c.pickle), Options{MaxSize: 1 << 20}) })
			limitErr(t, err, "length")
			if allocs > 20 {
				t.Fatalf("%v allocations to refuse", allocs)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		_, err := Decode([]byte("\x80\x04X\x10\x00\x00\x00abc."), Options{})
		formatErr(t, err, "truncated")
	})
	t.Run("memo", func(t *testing.T) {
		p := "\x80\x04N" + strings.Repeat("\x94", 101) + "."
		_, err := Decode([]byte(p), Options{MaxMemo: 100})
		limitErr(t, err, "memo")
		if _, err := Decode([]byte("\x80\x04N"+strings.Repeat("\x94", 100)+"."), Options{MaxMemo: 100}); err != nil {
			t.Fatalf("100 memo entries with MaxMemo 100: %v", err)
		}
	})
	t.Run("depth", func(t *testing.T) {
		if _, err := Decode(nested(DefaultMaxDepth), Options{}); err != nil {
			t.Fatalf("%d nested lists: %v", DefaultMaxDepth, err)
		}
		_, err := Decode(nested(DefaultMaxDepth+1), Options{})
		limitErr(t, err, "depth")
		_, err = Decode(nested(1_000_000), Options{})
		limitErr(t, err, "depth")
	})
	t.Run("digits", func(t *testing.T) {
		_, err := Decode([]byte("I"+strings.Repeat("7", 100_000)+"\n."), Options{})
		limitErr(t, err, "digits")
	})
	t.Run("shared tuples", func(t *testing.T) {
		// N, then 60 times (DUP, TUPLE2): 50 bytes, 2^60 leaves.
		p := "\x80\x04N" + strings.Repeat("2\x86", 60) + "."
		_, err := Decode([]byte(p), Options{})
		limitErr(t, err, "values")
		// Shared but small: decoded, and the sharing kept.
		v, err := Decode([]byte("\x80\x04N"+strings.Repeat("2\x86", 10)+"."), Options{})
		if err != nil {
			t.Fatal(err)
		}
		tu := v.(ogórek.Tuple)
		if &tu[0].(ogórek.Tuple)[0] != &tu[1].(ogórek.Tuple)[0] {
			t.Fatal("a shared tuple was copied")
		}
	})
	t.Run("cycle", func(t *testing.T) {
		// l = []; l.append(l)
		_, err := Decode([]byte("\x80\x04]\x94h\x00a."), Options{})
		formatErr(t, err, "contains itself")
	})
	t.Run("encode cycle", func(t *testing.T) {
		type node struct{ Next *node }
		n := &node{}
		n.Next = n
		_, err := Encode(n, Options{})
		limitErr(t, err, "depth")
		l := []any{nil}
		l[0] = l
		_, err = Encode(l, Options{})
		limitErr(t, err, "depth")
	})
}

// TestMalformed: every prefix of a valid pickle, and bytes after STOP,
// give a *FormatError (never a panic).
func TestMalformed(t *testing.T) {
	for _, k := range kinds {
		b, err := Encode(k.want, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(b) - 1 {
			if _, err := Decode(b[:i], Options{}); err == nil {
				t.Fatalf("%s: prefix of %d bytes decoded", k.py, i)
			}
		}
		_, err = Decode(append(bytes.Clone(b), 'N'), Options{})
		formatErr(t, err, "after STOP")
	}
	for _, p := range []string{"", ".", "(.", "a.", "]K\x01s.", "}a.", "(N\x8f\x90.", ")\x90.", "\x80\x06N.", "X\x01\x00\x00\x00\xff.", "U\x01\xe9.", "\xff."} {
		if v, err := Decode([]byte(p), Options{}); err == nil {
			t.Errorf("%q decoded as %#v", p, v)
		}
	}
}

func statFile(path string) (any, error) { return os.Stat(path) }

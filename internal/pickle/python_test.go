//go:build linux

package pickle

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/go-mp/mp/internal/pytest"
	ogórek "github.com/kisielk/og-rek"
)

type point struct {
	X, Y   int
	Label  string `pickle:"label"`
	Hidden int    `pickle:"-"`
	secret int
}

// kinds are the value kinds both ways: py is a Python expression, want
// what Decode makes of its pickle (and Encode must turn back into it),
// also other Go values that Encode must turn into the same Python value.
var kinds = []struct {
	py   string
	want any
	also []any
}{
	{"None", nil, []any{ogórek.None{}, (*int)(nil), []int(nil), map[string]int(nil)}},
	{"True", true, nil},
	{"False", false, nil},
	{"0", int64(0), []any{0, uint8(0)}},
	{"255", int64(255), []any{uint8(255)}},
	{"65535", int64(65535), []any{uint16(65535)}},
	{"65536", int64(65536), []any{int32(65536)}},
	{"-1", int64(-1), []any{int8(-1)}},
	{"2**31-1", int64(math.MaxInt32), nil},
	{"-2**31", int64(math.MinInt32), nil},
	{"2**31", int64(1 << 31), nil},
	{"2**63-1", int64(math.MaxInt64), nil},
	{"-2**63", int64(math.MinInt64), nil},
	{"2**63", bigInt("0x8000000000000000"), []any{uint64(1 << 63)}},
	{"2**64-1", bigInt("0xffffffffffffffff"), []any{uint64(math.MaxUint64)}},
	{"-2**63-1", bigInt("-0x8000000000000001"), nil},
	{"-2**64", bigInt("-0x10000000000000000"), nil},
	{"2**1000", new(bigIntT).Lsh(bigInt("1"), 1000), nil},
	{"-2**3000+1", new(bigIntT).Add(new(bigIntT).Neg(new(bigIntT).Lsh(bigInt("1"), 3000)), bigInt("1")), nil},
	{"1.5", 1.5, []any{float32(1.5)}},
	{"-0.0", math.Copysign(0, -1), nil},
	{"float('inf')", math.Inf(1), nil},
	{"1e300", 1e300, nil},
	{"''", "", nil},
	{"'héllo €'", "héllo €", nil},
	{"'\\U0001F600'", "\U0001F600", nil},
	{"'x'*300", strings.Repeat("x", 300), nil},
	{"'a\\udcff'", "a\xed\xb3\xbf", nil}, // a lone surrogate, as os.fsdecode makes
	{"b''", ogórek.Bytes(""), nil},
	{"b'\\x00\\xff'", ogórek.Bytes("\x00\xff"), nil},
	{"b'y'*300", ogórek.Bytes(strings.Repeat("y", 300)), nil},
	{"bytearray()", []byte{}, nil},
	{"bytearray(b'a\\x00\\xff')", []byte("a\x00\xff"), []any{[3]byte{'a', 0, 0xff}}},
	{"[]", []any{}, []any{[]int{}, [0]int{}}},
	{"[1, 'a', None]", []any{int64(1), "a", nil}, nil},
	{"[[1], [2, [3]]]", []any{[]any{int64(1)}, []any{int64(2), []any{int64(3)}}}, []any{[][]any{{1}, {2, []int{3}}}}},
	{"[a, a]", []any{[]any{int64(1), int64(2)}, []any{int64(1), int64(2)}}, nil},
	{"list(range(2500))", rangeList(2500), []any{rangeInts(2500)}},
	{"()", ogórek.Tuple{}, nil},
	{"(1,)", ogórek.Tuple{int64(1)}, nil},
	{"(1, 2)", ogórek.Tuple{int64(1), int64(2)}, nil},
	{"(1, 2, 3)", ogórek.Tuple{int64(1), int64(2), int64(3)}, nil},
	{"(1, 'b', 3.0, None)", ogórek.Tuple{int64(1), "b", 3.0, nil}, nil},
	{"{}", dict(), []any{map[string]int{}}},
	{"{'a': 1, 'b': [1, 2]}", dict("a", int64(1), "b", []any{int64(1), int64(2)}), []any{map[string]any{"a": 1, "b": []int{1, 2}}}},
	{"{1: 'x', (1, 2): b'y', None: 2.5}", dict(int64(1), "x", ogórek.Tuple{int64(1), int64(2)}, ogórek.Bytes("y"), ogórek.None{}, 2.5), nil},
	{"{'X': 1, 'Y': 2, 'label': 'p'}", dict("X", int64(1), "Y", int64(2), "label", "p"), []any{point{X: 1, Y: 2, Label: "p", Hidden: 9, secret: 7}, &point{X: 1, Y: 2, Label: "p"}}},
	{"{(None, 1): None, (2, (None,)): 3}", dict(ogórek.Tuple{ogórek.None{}, int64(1)}, nil, ogórek.Tuple{int64(2), ogórek.Tuple{ogórek.None{}}}, int64(3)), nil},
	{"set()", Set{}, nil},
	{"{1, 2, 3}", Set{int64(1), int64(2), int64(3)}, nil},
	{"{'a', (1, 2)}", Set{"a", ogórek.Tuple{int64(1), int64(2)}}, nil},
	{"frozenset()", FrozenSet{}, nil},
	{"frozenset({'a', 1})", FrozenSet{"a", int64(1)}, nil},
	{"[{1}, frozenset({2}), bytearray(b'z'), b'w', (None,)]", []any{Set{int64(1)}, FrozenSet{int64(2)}, []byte("z"), ogórek.Bytes("w"), ogórek.Tuple{nil}}, nil},
}

type bigIntT = big.Int

func rangeList(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = int64(i)
	}
	return l
}

func rangeInts(n int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = i
	}
	return l
}

// pyDump prints, for each expression on stdin, its pickles: the one
// multiprocessing's Connection.send makes, then protocols 0 to 5.
const pyDump = `
import sys, pickle
from multiprocessing.reduction import ForkingPickler
a = [1, 2]
for e in sys.stdin.read().split('\n'):
    v = eval(e)
    ps = [bytes(ForkingPickler.dumps(v))] + [pickle.dumps(v, protocol=p) for p in range(6)]
    print(' '.join(p.hex() for p in ps))
`

// pyCheck loads each pickle on stdin as Connection.recv does and compares
// it, types included, with the expression beside it.
const pyCheck = `
import sys
from multiprocessing.reduction import ForkingPickler
def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b and repr(a) == repr(b)
a = [1, 2]
for line in sys.stdin:
    e, h = line.rstrip('\n').split('\t')
    got = ForkingPickler.loads(bytes.fromhex(h))
    print('ok' if same(got, eval(e)) else 'FAIL %s: got %r' % (e, got))
`

// TestFromPython decodes what CPython pickles for every value kind, at
// every protocol and as multiprocessing's connections send it.
func TestFromPython(t *testing.T) {
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		var exprs []string
		for _, k := range kinds {
			exprs = append(exprs, k.py)
		}
		out := pytest.Run(t, py, []byte(strings.Join(exprs, "\n")), pyDump)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != len(kinds) {
			t.Fatalf("%d lines from python, want %d", len(lines), len(kinds))
		}
		for i, k := range kinds {
			for p, h := range strings.Fields(lines[i]) {
				data, _ := hex.DecodeString(h)
				got, err := Decode(data, Options{})
				if err != nil {
					t.Errorf("%s (pickle %d): %v", k.py, p-1, err)
					continue
				}
				if !same(got, k.want) {
					t.Errorf("%s (pickle %d): got %#v, want %#v", k.py, p-1, got, k.want)
				}
			}
		}
	})
}

// TestToPython has CPython load what Encode writes for every value kind
// and compare it, types included, with the expression.
func TestToPython(t *testing.T) {
	var in strings.Builder
	var names []string
	for _, k := range kinds {
		for j, v := range append([]any{k.want}, k.also...) {
			b, err := Encode(v, Options{})
			if err != nil {
				t.Fatalf("Encode(%s, #%d %T): %v", k.py, j, v, err)
			}
			fmt.Fprintf(&in, "%s\t%x\n", k.py, b)
			names = append(names, fmt.Sprintf("%s (Go %T)", k.py, v))
		}
	}
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		out := strings.Split(strings.TrimSpace(string(pytest.Run(t, py, []byte(in.String()), pyCheck))), "\n")
		if len(out) != len(names) {
			t.Fatalf("%d answers from python, want %d: %q", len(out), len(names), out)
		}
		for i, o := range out {
			if o != "ok" {
				t.Errorf("%s: %s", names[i], o)
			}
		}
	})
}

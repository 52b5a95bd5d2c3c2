//go:build linux

package pickle

import (
	"bytes"
	"errors"
	"math/big"
	"reflect"
	"testing"

	ogórek "github.com/kisielk/og-rek"
)

// TestInto stores decoded values in typed destinations, and refuses those
// that do not fit with a *MismatchError saying where.
func TestInto(t *testing.T) {
	type inner struct {
		V []uint16 `pickle:"v"`
	}
	type outer struct {
		Name  string
		In    inner             `pickle:"in"`
		Opt   *float64          `pickle:"opt"`
		M     map[string]string `pickle:"m"`
		Skip  int               `pickle:"-"`
		Tuple [2]any            `pickle:"t"`
	}
	half := 0.5
	ok := []struct {
		v    any
		dst  any // pointer
		want any
	}{
		{int64(5), new(int8), int8(5)},
		{int64(5), new(float64), 5.0},
		{bigInt("0xffffffffffffffff"), new(uint64), uint64(1<<64 - 1)},
		{int64(-3), new(big.Int), *big.NewInt(-3)},
		{nil, new([]int), []int(nil)},
		{ogórek.Bytes("ab"), new([]byte), []byte("ab")},
		{[]byte("ab"), new([2]uint8), [2]uint8{'a', 'b'}},
		{Set{"a"}, new(map[string]bool), map[string]bool{"a": true}},
		{FrozenSet{int64(1)}, new([]int), []int{1}},
		{dict(ogórek.None{}, int64(1)), new(map[*int]int), map[*int]int{nil: 1}},
		{dict(ogórek.Tuple{ogórek.None{}, int64(1)}, int64(2)), new(map[[2]any]int), map[[2]any]int{{nil, int64(1)}: 2}},
		{ogórek.Tuple{int64(1), "x"}, new(any), ogórek.Tuple{int64(1), "x"}},
		{dict("Name", "n", "in", dict("v", []any{int64(1), int64(2)}), "opt", 0.5, "m", dict("k", "v"), "Skip", int64(9), "t", ogórek.Tuple{nil, true}, "other", int64(1)),
			new(outer), outer{Name: "n", In: inner{V: []uint16{1, 2}}, Opt: &half, M: map[string]string{"k": "v"}, Tuple: [2]any{nil, true}}},
	}
	for _, c := range ok {
		if err := Into(c.v, c.dst); err != nil {
			t.Errorf("Into(%#v, %T): %v", c.v, c.dst, err)
			continue
		}
		got := reflect.ValueOf(c.dst).Elem().Interface()
		if b, isBig := got.(big.Int); isBig {
			w := c.want.(big.Int)
			if b.Cmp(&w) != 0 {
				t.Errorf("Into(%#v): got %v", c.v, &b)
			}
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Into(%#v, %T): got %#v, want %#v", c.v, c.dst, got, c.want)
		}
	}
	bad := []struct {
		v    any
		dst  any
		path string
	}{
		{"x", new(int), ""},
		{int64(300), new(uint8), ""},
		{int64(-1), new(uint), ""},
		{bigInt("0x10000000000000000"), new(int64), ""},
		{nil, new(int), ""},
		{true, new(int), ""},
		{ogórek.Bytes("abc"), new([2]byte), ""},
		{[]any{int64(1), "2"}, new([]int), "[1]"},
		{Set{int64(1)}, new(map[int]int), ""},
		{dict(int64(1), int64(2)), new(outer), ""},
		{dict("in", dict("v", []any{int64(70000)})), new(outer), ".in.v[0]"},
		{1.5, new(string), ""},
		{dict(ogórek.Tuple{int64(1)}, int64(2)), new(map[any]int), "[key]"},
		{Set{ogórek.Tuple{int64(1)}}, new(map[any]bool), "[key]"},
	}
	for _, c := range bad {
		err := Into(c.v, c.dst)
		var me *MismatchError
		if !errors.As(err, &me) || me.Path != c.path {
			t.Errorf("Into(%#v, %T): got %v, want a MismatchError at %q", c.v, c.dst, err, c.path)
		}
	}
	var n int
	if err := Into(int64(1), n); err == nil {
		t.Error("Into a non-pointer succeeded")
	}
}

// sharedGrid is a pickle of [[[0] * 1000] * 64] * 1000, as Python writes
// it: one list of 1000 zeros, one list of 64 references to it, and a list
// of 1000 references to that: 4 KiB for 64 million values met by a walk.
func sharedGrid() []byte {
	b := []byte("\x80\x05]\x94(")
	b = append(b, bytes.Repeat([]byte("K\x00"), 1000)...)
	b = append(b, "e0]\x94("...)
	b = append(b, bytes.Repeat([]byte("h\x00"), 64)...)
	b = append(b, "e0]("...)
	b = append(b, bytes.Repeat([]byte("h\x01"), 1000)...)
	return append(b, "e."...)
}

// TestIntoSharesWhatThePickleShares: what a pickle shares (a list it
// references more than once) is shared in what Into makes too, as in
// Python, so that its memory stays proportional to the message. Into
// used to make a copy per reference: the 4 KiB of sharedGrid took 5.5
// GB and 10 s into a [][][]int64.
func TestIntoSharesWhatThePickleShares(t *testing.T) {
	msg := sharedGrid()
	v, err := Decode(msg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var grid [][][]int64
	allocs := testing.AllocsPerRun(1, func() {
		if err := Into(v, &grid); err != nil {
			t.Fatal(err)
		}
	})
	// A few per value the pickle holds (its 2064 items), not per value
	// a walk meets.
	if allocs > float64(2*len(msg)) {
		t.Fatalf("Into made %v allocations for a %d-byte pickle of 3 lists", allocs, len(msg))
	}
	if len(grid) != 1000 || len(grid[999]) != 64 || len(grid[999][63]) != 1000 || grid[999][63][999] != 0 {
		t.Fatal("the grid does not hold what the pickle does")
	}
	if &grid[0][0][0] != &grid[999][63][0] || &grid[0][0] != &grid[999][0] {
		t.Fatal("the rows the pickle shares are copies")
	}
}

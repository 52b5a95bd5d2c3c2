//go:build linux

package mp

import (
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestHandleFree(t *testing.T) {
	type inner struct{ C *Conn }
	type tree struct {
		Kids []*tree
		N    int
	}
	for _, c := range []struct {
		v              any
		encode, decode bool
	}{
		{1, true, true},
		{"s", true, true},
		{struct{ A []float64 }{}, true, true},
		{tree{}, true, true},
		{cbor.RawMessage(nil), true, true},
		{taskMsg{}, true, true},
		{&Conn{}, false, false},
		{inner{}, false, false},
		{map[string]*Lock{}, false, false},
		{[]any{}, false, true},
		{new(Queue[int]), false, false},
		{bootMsg{}, true, true},
	} {
		typ := reflect.TypeOf(c.v)
		if got := handleFree(typ, false); got != c.encode {
			t.Errorf("%v: free to encode = %v", typ, got)
		}
		if got := handleFree(typ, true); got != c.decode {
			t.Errorf("%v: free to decode = %v", typ, got)
		}
	}
}

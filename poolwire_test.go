package mp

import (
	"bytes"
	"reflect"
	"testing"
)

func TestPoolWireRoundTrip(t *testing.T) {
	for _, m := range []taskMsg{
		{ID: 1, Target: "t", Arg: []byte{1, 2, 3}},
		{ID: 1 << 40, Target: "a.long.target.name", Chunk: true, Arg: []byte{}},
		{ID: 7, Target: "", Split: true, Arg: []byte{}},
	} {
		var got taskMsg
		if err := got.parse(m.appendTo(nil)); err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v, want %+v", got, m)
		}
	}
	for _, r := range []taskResult{
		{},
		{ID: 3, Result: []byte("xyz"), Busy: 12345},
		{ID: 4, Split: true, Exit: true, Result: []byte{}},
		{ID: 5, Err: &RemoteError{Process: "p", Pid: 9, Message: "boom", Panic: true, Stack: "s"}, Result: []byte{}},
	} {
		b, err := r.appendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		var got taskResult
		if err := got.parse(b); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if r.Result == nil {
			r.Result = []byte{}
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("got %+v, want %+v", got, r)
		}
	}
}

func TestPoolWireRejectsBadMessages(t *testing.T) {
	split, _ := (&taskResult{ID: 1, Split: true}).appendTo(nil)
	for name, b := range map[string][]byte{
		"empty":           {},
		"id only":         {1},
		"id zero":         (&taskMsg{ID: 0, Target: "t"}).appendTo(nil),
		"target too long": {1, 0, 50, 'a'},
		"split with arg":  append((&taskMsg{ID: 1, Target: "t", Split: true}).appendTo(nil), 9),
		"bad varint":      bytes.Repeat([]byte{0xff}, 12),
	} {
		var m taskMsg
		if err := m.parse(b); err == nil {
			t.Errorf("task %s: parsed as %+v", name, m)
		}
	}
	for name, b := range map[string][]byte{
		"empty":             {},
		"no busy":           {1, 0},
		"error too long":    {1, wireErr, 0, 40, 1},
		"error not CBOR":    {1, wireErr, 0, 1, 0xff},
		"split with result": append(split, 1),
	} {
		var r taskResult
		if err := r.parse(b); err == nil {
			t.Errorf("result %s: parsed as %+v", name, r)
		}
	}
}

func FuzzPoolWire(f *testing.F) {
	f.Add((&taskMsg{ID: 1, Target: "t", Arg: []byte{1}}).appendTo(nil))
	b, _ := (&taskResult{ID: 2, Err: &RemoteError{Message: "m"}}).appendTo(nil)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m taskMsg
		if m.parse(b) == nil {
			var again taskMsg
			if err := again.parse(m.appendTo(nil)); err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("task %+v does not survive a round trip: %+v, %v", m, again, err)
			}
		}
		var r taskResult
		if r.parse(b) == nil {
			if _, err := r.appendTo(nil); err != nil {
				t.Fatalf("result %+v parsed but does not encode: %v", r, err)
			}
		}
	})
}

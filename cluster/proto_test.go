//go:build linux

package cluster

import (
	"bytes"
	"reflect"
	"testing"
)

func TestProtoRoundTrip(t *testing.T) {
	tm := taskMsg{Chunk: true, Timeout: 5e9, Target: "t.x", Inst: "abc", Job: 1 << 40, Index: 7}
	var gt taskMsg
	if err := gt.parse(append(tm.appendHead(nil), 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gt.Arg, []byte{1, 2, 3}) {
		t.Fatalf("arg %v", gt.Arg)
	}
	gt.Arg, tm.Arg = nil, nil
	if !reflect.DeepEqual(gt, tm) {
		t.Fatalf("got %+v, want %+v", gt, tm)
	}
	rm := resultMsg{Job: 3, Index: 4, Kind: resTimeout, Payload: []byte("late")}
	var gr resultMsg
	if err := gr.parse(rm.appendTo(nil)); err != nil || !reflect.DeepEqual(gr, rm) {
		t.Fatalf("result: %+v, %v", gr, err)
	}
	for _, cm := range []cancelMsg{{Inst: "i", Job: 2, All: true}, {Inst: "i", Job: 2, Idx: 0}, {Inst: "i", Job: 2, Idx: 9}} {
		var gc cancelMsg
		if err := gc.parse(cm.appendTo(nil)); err != nil || gc != cm {
			t.Fatalf("cancel: %+v, %v, want %+v", gc, err, cm)
		}
	}
	hb := heartbeat{ID: "w", Slots: 4}
	var gh heartbeat
	if err := gh.parse(hb.appendTo(nil)); err != nil || gh != hb {
		t.Fatalf("heartbeat: %+v, %v", gh, err)
	}
}

func TestProtoRejectsBadMessages(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":           {},
		"other version":   {2, 0},
		"target too long": {protoVersion, 0, 0, 50, 't'},
		"no inst":         append((&taskMsg{Target: "t", Inst: "i"}).appendHead(nil)[:5], 0, 1, 1),
		"bad varint":      append([]byte{protoVersion, 0}, bytes.Repeat([]byte{0xff}, 12)...),
	} {
		var tm taskMsg
		if err := tm.parse(b); err == nil {
			t.Errorf("task %s: accepted", name)
		}
	}
	var rm resultMsg
	if rm.parse([]byte{protoVersion, 1, 1, resCancelled + 1}) == nil {
		t.Error("result of an unknown kind accepted")
	}
	var hb heartbeat
	if hb.parse(append((&heartbeat{ID: "w"}).appendTo(nil)[:3], 0xff, 0xff, 0xff, 0x7f)) == nil {
		t.Error("heartbeat with absurd slots accepted")
	}
}

// FuzzProto: no message makes a parser panic, and what parses encodes
// back to what was parsed.
func FuzzProto(f *testing.F) {
	f.Add((&taskMsg{Target: "t", Inst: "i", Job: 1}).appendHead(nil))
	f.Add((&resultMsg{Job: 1, Payload: []byte("x")}).appendTo(nil))
	f.Add((&cancelMsg{Inst: "i", All: true}).appendTo(nil))
	f.Add((&heartbeat{ID: "w", Slots: 2}).appendTo(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tm taskMsg
		if tm.parse(b) == nil {
			var again taskMsg
			if err := again.parse(append(tm.appendHead(nil), tm.Arg...)); err != nil || !reflect.DeepEqual(again, tm) {
				t.Fatalf("task %+v re-parsed as %+v, %v", tm, again, err)
			}
		}
		var rm resultMsg
		if rm.parse(b) == nil {
			var again resultMsg
			if err := again.parse(rm.appendTo(nil)); err != nil || !reflect.DeepEqual(again, rm) {
				t.Fatalf("result %+v re-parsed as %+v, %v", rm, again, err)
			}
		}
		var cm cancelMsg
		cm.parse(b)
		var hb heartbeat
		hb.parse(b)
	})
}

// A heartbeat decodes, and damaged ones (short, another version, lengths
// past the end, bytes left over) are refused without a panic: `mp cluster
// status` reads any message on the heartbeats' subjects.
func TestParseHeartbeat(t *testing.T) {
	var h heartbeat
	if err := h.parse([]byte{1, 3, 'a', 'b', 'c', 0x80, 0x01}); err != nil || h.ID != "abc" || h.Slots != 128 {
		t.Fatalf("good heartbeat: %+v %v", h, err)
	}
	for _, b := range [][]byte{
		nil, {1}, {2, 3, 'a', 'b', 'c', 1}, {1, 4, 'a', 'b', 'c'}, {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{1, 3, 'a', 'b', 'c'}, {1, 3, 'a', 'b', 'c', 0x80}, {1, 3, 'a', 'b', 'c', 1, 0},
	} {
		if err := h.parse(b); err == nil {
			t.Errorf("parse(%v) = %+v, accepted", b, h)
		}
	}
}

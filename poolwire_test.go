//go:build linux

package mp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"
)

func TestPoolWireRoundTrip(t *testing.T) {
	for _, m := range []taskMsg{
		{ID: 1, Target: "t", Arg: []byte{1, 2, 3}},
		{ID: 1 << 40, Target: "a.long.target.name", Chunk: true, Arg: []byte{}},
		{ID: 7, Target: "", Split: true, Arg: []byte{}},
		{ID: 8, Target: "k", Key: "inst-3.14", Arg: []byte{5}},
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
		"key too long":    {1, wireKey, 1, 't', 9, 'k'},
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

// A dead worker's ledger is read as untrusted input: whatever its memory
// holds, results gives only whole records, within the ledger.
func TestPoolLedgerRejectsBadRecords(t *testing.T) {
	led, err := newLedger()
	if err != nil {
		t.Fatal(err)
	}
	defer led.close()
	put := func(off int, head, body []byte) int {
		rec := led.records[off:]
		binary.LittleEndian.PutUint32(rec, uint32(len(head)))
		binary.LittleEndian.PutUint32(rec[4:], uint32(len(body)))
		copy(rec[ledgerRecHead:], head)
		copy(rec[ledgerRecHead+len(head):], body)
		return off + ledgerRecHead + len(head) + len(body)
	}
	good, _ := (&taskResult{ID: 7, Result: []byte("ok")}).appendTo(nil)
	split, _ := (&taskResult{ID: 8, Split: true}).appendTo(nil)
	end := put(0, good, nil)
	end = put(end, split, []byte("body"))
	led.committed.Store(uint64(end))
	recs := led.results()
	if len(recs) != 2 || recs[0].res.ID != 7 || string(recs[0].out) != "ok" || recs[1].res.ID != 8 || string(recs[1].out) != "body" {
		t.Fatalf("good records read as %+v", recs)
	}
	for name, c := range map[string]struct {
		committed uint64
		write     func()
		want      int
	}{
		"committed past the end": {committed: ^uint64(0), write: func() {}, want: 2},
		"committed mid-record":   {committed: uint64(end - 1), write: func() {}, want: 1},
		"head past the end":      {committed: uint64(end), write: func() { binary.LittleEndian.PutUint32(led.records[ledgerRecHead+len(good):], ^uint32(0)) }, want: 1},
		"split without a body":   {committed: uint64(end), write: func() { put(0, split, nil) }, want: 0},
		"body without split":     {committed: uint64(end), write: func() { put(0, good, []byte("x")) }, want: 0},
		"garbage head":           {committed: uint64(end), write: func() { put(0, []byte{0xff, 0xff}, nil) }, want: 0},
	} {
		put(put(0, good, nil), split, []byte("body"))
		c.write()
		led.committed.Store(c.committed)
		if got := led.results(); len(got) != c.want {
			t.Errorf("%s: %d records, want %d", name, len(got), c.want)
		}
	}
	// Random memory never makes it panic.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.IntN(64)
		for i := range n {
			led.records[i] = byte(rng.UintN(256))
		}
		if rng.IntN(2) == 0 {
			binary.LittleEndian.PutUint32(led.records, uint32(rng.IntN(n+1)))
			binary.LittleEndian.PutUint32(led.records[4:], 0)
		}
		led.committed.Store(uint64(rng.IntN(n + 1)))
		led.results()
	}
}

// FuzzPoolLedger reads arbitrary ledger memory as the pool reads a dead
// worker's: it must never panic, and every record it returns must lie
// within the published part of the ledger.
func FuzzPoolLedger(f *testing.F) {
	good, _ := (&taskResult{ID: 7, Result: []byte("ok")}).appendTo(nil)
	rec := binary.LittleEndian.AppendUint32(nil, uint32(len(good)))
	rec = binary.LittleEndian.AppendUint32(rec, 0)
	f.Add(append(rec, good...), uint64(len(rec)+len(good)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, ^uint64(0))
	led, err := newLedger()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(led.close)
	f.Fuzz(func(t *testing.T, mem []byte, committed uint64) {
		n := copy(led.records, mem)
		clear(led.records[n:min(len(led.records), 4096)])
		led.committed.Store(committed)
		published := led.records[:min(committed, uint64(len(led.records)))]
		for _, r := range led.results() {
			b := r.out
			if len(b) > 0 && (uintptr(unsafe.Pointer(&b[0])) < uintptr(unsafe.Pointer(&published[0])) ||
				uintptr(unsafe.Pointer(&b[len(b)-1])) > uintptr(unsafe.Pointer(&published[len(published)-1]))) {
				t.Fatalf("record %d's result lies outside the published records", r.res.ID)
			}
		}
	})
}

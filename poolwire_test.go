//go:build linux

package mp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"

	"github.com/go-mp/mp/internal/ringconn"
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

// spoolLink returns a worker's result spool over a new link, and the
// pool's side of the link.
func spoolLink(t *testing.T) (*resultSpool, *ringconn.Conn) {
	t.Helper()
	a, b, ring, err := newWorkerLink()
	if err != nil {
		t.Fatal(err)
	}
	// The worker's side over the same mapping, which the pool's side
	// unmaps when it closes.
	wc, err := ringconn.New(b, ring.e.e, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	led, err := newLedger()
	if err != nil {
		t.Fatal(err)
	}
	spool := newResultSpool(wc, led)
	t.Cleanup(func() {
		spool.stop()
		wc.Close()
		a.Close()
		led.close()
	})
	return spool, a
}

// recvAll receives the messages waiting in c.
func recvAll(t *testing.T, c *ringconn.Conn) [][]byte {
	t.Helper()
	var msgs [][]byte
	for c.Buffered() {
		msg, _, err := recvInto(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, bytes.Clone(msg))
	}
	return msgs
}

// A worker's results held for one write go as one message (issue 13:
// one receive, one turn of the pool's lock, for a burst of results; one
// message each before), a split result ending its pack, its result the
// message after.
func TestResultSpoolPacksResults(t *testing.T) {
	spool, pool := spoolLink(t)
	for id := uint64(1); id <= 10; id++ {
		if err := spool.add(&taskResult{ID: id, Result: []byte{byte(id)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte{7}, splitAbove+1)
	if err := spool.add(&taskResult{ID: 11, Split: true}, big); err != nil {
		t.Fatal(err)
	}
	spool.add(&taskResult{ID: 12, Result: []byte{12}}, nil)
	if err := spool.flush(); err != nil {
		t.Fatal(err)
	}
	msgs := recvAll(t, pool)
	if len(msgs) != 3 {
		t.Fatalf("12 results held came as %d messages, want 3 (a pack of 11 ending with a split one, its result, a pack of 1)", len(msgs))
	}
	rs, err := parsePack(nil, msgs[0])
	if err != nil || len(rs) != 11 || !rs[10].Split || rs[10].ID != 11 {
		t.Fatalf("first pack: %+v, %v", rs, err)
	}
	for i, r := range rs[:10] {
		if r.ID != uint64(i+1) || !bytes.Equal(r.Result, []byte{byte(i + 1)}) || r.Split {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if !bytes.Equal(msgs[1], big) {
		t.Fatalf("the split result came as %d bytes", len(msgs[1]))
	}
	if rs, err := parsePack(nil, msgs[2]); err != nil || len(rs) != 1 || rs[0].ID != 12 {
		t.Fatalf("last pack: %+v, %v", rs, err)
	}
}

// A pack is a worker's message, parsed as untrusted input.
func TestPoolWireRejectsBadPacks(t *testing.T) {
	one, _ := (&taskResult{ID: 1, Result: []byte("a")}).appendTo(nil)
	split, _ := (&taskResult{ID: 2, Split: true}).appendTo(nil)
	good := appendPacked(appendPacked(nil, one), split)
	if rs, err := parsePack(nil, good); err != nil || len(rs) != 2 {
		t.Fatalf("a good pack: %+v, %v", rs, err)
	}
	for name, b := range map[string][]byte{
		"empty":               {},
		"length past the end": {byte(len(one) + 1)}, // and nothing after
		"bad varint":          bytes.Repeat([]byte{0xff}, 12),
		"split not last":      appendPacked(appendPacked(nil, split), one),
		"bad result":          appendPacked(nil, []byte{1}),
		"truncated":           good[:len(good)-1],
	} {
		if _, err := parsePack(nil, b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 { // random bytes never make it panic
		b := make([]byte, rng.IntN(32))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		parsePack(nil, b)
	}
}

// The tasks of one send to a worker go as one message (issue 13: one
// receive in the worker for a batch; one message each before), a split
// task ending its pack, its argument the message after.
func TestSendToPacksTasks(t *testing.T) {
	a, b, ring, err := newWorkerLink()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := ringconn.New(b, ring.e.e, false, nil) // see spoolLink
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		wc.Close()
		a.Close()
	}()
	p := &Pool{}
	w := &worker{conn: a, sent: make(chan struct{}, 1)}
	big := bytes.Repeat([]byte{7}, splitAbove+1)
	var ts []*task
	for id := uint64(1); id <= 12; id++ {
		arg := []byte{byte(id)}
		if id == 11 {
			arg = big
		}
		ts = append(ts, &task{id: id, target: "t", arg: arg})
	}
	p.mu.Lock()
	p.sendTo(w, ts) // unlocks p.mu
	msgs := recvAll(t, wc)
	if len(msgs) != 3 {
		t.Fatalf("12 tasks sent at once came as %d messages, want 3 (a pack of 11 ending with a split one, its argument, a pack of 1)", len(msgs))
	}
	var tm taskMsg
	pack := msgs[0]
	for id := uint64(1); id <= 11; id++ {
		msg, rest, err := nextPacked(pack)
		if err != nil || tm.parse(msg) != nil || tm.ID != id || tm.Split != (id == 11) {
			t.Fatalf("task %d: %+v, %v", id, tm, err)
		}
		if id < 11 && !bytes.Equal(tm.Arg, []byte{byte(id)}) {
			t.Fatalf("task %d's argument: %v", id, tm.Arg)
		}
		pack = rest
	}
	if len(pack) != 0 || !bytes.Equal(msgs[1], big) {
		t.Fatalf("after the split task: %d bytes more in its pack, its argument %d bytes", len(pack), len(msgs[1]))
	}
	if msg, rest, err := nextPacked(msgs[2]); err != nil || len(rest) != 0 || tm.parse(msg) != nil || tm.ID != 12 {
		t.Fatalf("last pack: %+v, %v", tm, err)
	}
	if len(w.pending) != 12 {
		t.Fatalf("%d tasks pending, want 12", len(w.pending))
	}
}

// TestLedgerCancelsAcrossWrap: the ledger's cancel counter is a uint32;
// once it wraps past 2^32 requests, the requests written just before the
// wrap still count (the counter used to read 0, "nothing ever cancelled",
// then a handful of requests, so that the older slots went unread and
// those tasks ran), and so do those after it.
func TestLedgerCancelsAcrossWrap(t *testing.T) {
	led, err := newLedger()
	if err != nil {
		t.Fatal(err)
	}
	defer led.close()
	for _, before := range []uint32{1, 2, 3, cancelSlots / 2} {
		start := ^uint32(0) - before + 1 // before requests to go until the wrap
		led.cancelSeq.Store(start)
		base := uint64(before) << 32 // ids of this round, never used before
		const n = cancelSlots
		for i := range uint64(n) {
			led.requestCancel(base + i)
			// The oldest and the newest request so far are held (all are:
			// there are at most cancelSlots).
			for _, j := range []uint64{0, i} {
				if !led.cancelled(base + j) {
					t.Fatalf("%d requests before the wrap, after request %d: the cancel of request %d is lost (counter %d)",
						before, i, j, led.cancelSeq.Load())
				}
			}
		}
		for j := range uint64(n) {
			if !led.cancelled(base + j) {
				t.Fatalf("%d requests before the wrap: the cancel of request %d is lost", before, j)
			}
		}
		if led.cancelled(base + n) {
			t.Fatalf("a task never cancelled reads as cancelled")
		}
	}
}

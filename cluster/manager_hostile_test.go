//go:build linux

package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/manager"
)

// Hostile peers of a Manager on JetStream: a client of the NATS server
// (with its credentials) that writes what it likes into the manager's
// bucket (kvBucket) and queues' stream (queueStream). Whatever it writes,
// the proxies must return a typed error (or a sane value), never panic
// or wait for ever, and other objects must keep working.

// peerKV is the manager's bucket, opened by the peer's own connection,
// and the peer's JetStream, with which it writes keys that the bucket's
// API would refuse.
func peerKV(t *testing.T, c *Cluster) (jetstream.KeyValue, jetstream.JetStream) {
	t.Helper()
	js := peerJS(t, peerConn(t, c))
	kv, err := js.KeyValue(testCtx(t, 10*time.Second), kvBucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv, js
}

// objKey is the bucket's key of the object of kind prefix (see
// manager/kv.go: "v.", "l.", "s."...) named name.
func objKey(prefix, name string) string {
	return prefix + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// cbor encodes v as the manager would.
func cbor(t *testing.T, v any) []byte {
	t.Helper()
	b, err := codec.DetMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCorrupt fails the test unless err is manager.ErrCorrupt.
func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, manager.ErrCorrupt) {
		t.Errorf("%s: %v, want ErrCorrupt", what, err)
	}
}

// TestManagerCorruptState: a peer writes garbage, truncated, oversized
// and type-confused values under each kind's key; every call on the
// object returns ErrCorrupt (in time: each call's ctx is far), and
// another object keeps working.
func TestManagerCorruptState(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	_, js := peerKV(t, c)
	put := func(key string, v []byte) {
		t.Helper()
		if _, err := js.Publish(ctx, kvSubject+key, v); err != nil {
			t.Fatal(err)
		}
	}
	garbage := []byte{0xff, 0x00, 0x13}

	// Semaphore: garbage, a negative count (which would give units for
	// ever), counts at the edges of int64, and beyond.
	sem, err := manager.NewBoundedSemaphore(ctx, m, 2, manager.Named("sem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{garbage, cbor(t, [2]int{-1, -1}), cbor(t, [2]int{-3, 5}),
		cbor(t, [2]int64{-1 << 63, -1}), cbor(t, [2]uint64{1 << 63, 1}), cbor(t, [2]int{1, -2}),
		cbor(t, [2]int{5, 2}), cbor(t, [3]int{1, 1, 1}), cbor(t, "two"), {}} {
		ctx := testCtx(t, 5*time.Second) // each call returns long before
		put(objKey("s.", "sem"), v)
		ok, err := sem.TryAcquire(ctx)
		wantCorrupt(t, "TryAcquire of a semaphore holding "+string(v), err)
		if ok {
			t.Errorf("TryAcquire of a semaphore holding % x took a unit", v)
		}
		wantCorrupt(t, "Acquire", sem.Acquire(ctx))
		wantCorrupt(t, "Release", sem.Release(ctx))
		_, err = sem.Value(ctx)
		wantCorrupt(t, "Value", err)
	}
	// At the edge of int: a unit is taken, a Release too many refused.
	put(objKey("s.", "sem"), cbor(t, [2]int64{1<<63 - 1, -1}))
	if err := sem.Release(ctx); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Errorf("Release of a semaphore at MaxInt64: %v, want ErrReleasedTooManyTimes", err)
	}
	if ok, err := sem.TryAcquire(ctx); err != nil || !ok {
		t.Errorf("TryAcquire of a semaphore at MaxInt64 = %v %v", ok, err)
	}

	// Event: a flag that is not a boolean.
	ev, err := manager.NewEvent(ctx, m, manager.Named("ev"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{garbage, cbor(t, 1), {}} {
		ctx := testCtx(t, 5*time.Second)
		put(objKey("e.", "ev"), v)
		_, err := ev.IsSet(ctx)
		wantCorrupt(t, "IsSet of an event holding "+string(v), err)
		wantCorrupt(t, "Wait", ev.Wait(ctx))
	}

	// Barrier: parties 0 or negative, a count beyond the parties, garbage.
	bar, err := manager.NewBarrier(ctx, m, 2, 0, manager.Named("bar"))
	if err != nil {
		t.Fatal(err)
	}
	type barrierState struct {
		_       struct{} `cbor:",toarray"`
		Gen     uint64
		Count   int
		Broken  bool
		Parties int
		Timeout time.Duration
		Resets  []uint64
	}
	for _, v := range [][]byte{garbage, cbor(t, barrierState{Parties: 0}), cbor(t, barrierState{Parties: -2}),
		cbor(t, barrierState{Parties: 2, Count: 5}), cbor(t, barrierState{Parties: 2, Count: -1}), cbor(t, 7)} {
		ctx := testCtx(t, 5*time.Second)
		put(objKey("b.", "bar"), v)
		_, err := bar.Wait(ctx)
		wantCorrupt(t, "Wait of a barrier holding "+string(v), err)
		_, err = bar.Parties(ctx)
		wantCorrupt(t, "Parties", err)
		wantCorrupt(t, "Reset", bar.Reset(ctx))
		wantCorrupt(t, "Abort", bar.Abort(ctx))
	}

	// JoinableQueue: its count of unfinished items negative, garbage, at
	// the edge of int64.
	jq, err := manager.NewJoinableQueue[int](ctx, m, 0, manager.Named("jq"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{garbage, codec.AppendInt(nil, -4), cbor(t, "0"), {}, {0x18, 0x01}} {
		ctx := testCtx(t, 5*time.Second)
		put(objKey("j.", "jq"), v)
		wantCorrupt(t, "Join of a count "+string(v), jq.Join(ctx))
		wantCorrupt(t, "TaskDone", jq.TaskDone(ctx))
		wantCorrupt(t, "Put", jq.Put(ctx, 1))
	}
	put(objKey("j.", "jq"), codec.AppendInt(nil, 1<<63-1))
	wantCorrupt(t, "Put beyond MaxInt64 unfinished items", jq.Put(ctx, 1))

	// List and Array: garbage, a length of 2^40, a count that disagrees
	// with the items (fewer, more), items not well formed.
	l, err := manager.NewList(ctx, m, []int{1, 2}, manager.Named("list"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := manager.NewArray(ctx, m, []int{1, 2}, manager.Named("arr"))
	if err != nil {
		t.Fatal(err)
	}
	huge := codec.AppendHead(nil, 4, 1<<40)
	for _, v := range [][]byte{garbage, append(huge, 1, 2), {0x82, 0x01}, {0x82, 0x01, 0x02, 0x03}, {0x81, 0x5f},
		{0x82, 0x01, 0x7a, 0xff, 0xff, 0xff, 0xff}, cbor(t, 12), {}} {
		ctx := testCtx(t, 5*time.Second)
		put(objKey("L.", "list"), v)
		put(objKey("A.", "arr"), v)
		_, err := l.Len(ctx)
		wantCorrupt(t, "Len of a list holding "+string(v), err)
		wantCorrupt(t, "Append", l.Append(ctx, 3))
		_, err = a.Get(ctx, 0)
		wantCorrupt(t, "Get of an array", err)
		wantCorrupt(t, "Set of an array", a.Set(ctx, 0, 3))
	}

	// Dict and Namespace: a key no proxy could have written (not in the
	// encoding of keys).
	d, err := manager.NewDict[string, int](ctx, m, manager.Named("dict"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	put(objKey("d.", "dict")+".a.b", cbor(t, 1))
	put(objKey("d.", "dict")+".!!", cbor(t, 1))
	_, err = d.Keys(ctx)
	wantCorrupt(t, "Keys of a dict with a foreign key", err)
	_, err = d.Len(ctx)
	wantCorrupt(t, "Len", err)
	if err := d.Clear(ctx); err != nil {
		t.Errorf("Clear of a dict with a foreign key: %v", err)
	}
	if n, err := d.Len(ctx); err != nil || n != 0 {
		t.Errorf("Len after Clear = %v %v, want 0", n, err)
	}

	// Another object still works.
	v, err := manager.NewValue(ctx, m, 1, manager.Named("ok"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := v.CompareAndSwap(ctx, 1, 2); err != nil || !ok {
		t.Fatalf("CompareAndSwap of another object = %v %v", ok, err)
	}
}

// TestManagerDeletedUnderWaiters: a peer deletes or purges the key of an
// object while a proxy waits on it (a Barrier's Wait, a Semaphore's
// Acquire, an Event's Wait, a JoinableQueue's Join, whose ctx is far):
// each returns ErrNoObject at once rather than wait for ever.
func TestManagerDeletedUnderWaiters(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	kv, _ := peerKV(t, c)
	bar, err := manager.NewBarrier(ctx, m, 2, 0, manager.Named("bar"))
	if err != nil {
		t.Fatal(err)
	}
	sem, err := manager.NewSemaphore(ctx, m, 0, manager.Named("sem"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := manager.NewEvent(ctx, m, manager.Named("ev"))
	if err != nil {
		t.Fatal(err)
	}
	jq, err := manager.NewJoinableQueue[int](ctx, m, 0, manager.Named("jq"))
	if err != nil {
		t.Fatal(err)
	}
	if err := jq.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waiters := []struct {
		key    string
		purge  bool
		wait   func() error
		inside func() bool // the waiter is waiting
	}{
		{objKey("b.", "bar"), false, func() error { _, err := bar.Wait(ctx); return err },
			func() bool { n, _ := bar.NWaiting(ctx); return n == 1 }},
		{objKey("s.", "sem"), true, func() error { return sem.Acquire(ctx) }, nil},
		{objKey("e.", "ev"), false, func() error { return ev.Wait(ctx) }, nil},
		{objKey("j.", "jq"), true, func() error { return jq.Join(ctx) }, nil},
	}
	for _, w := range waiters {
		done := make(chan error, 1)
		go func() { done <- w.wait() }()
		if w.inside != nil {
			awaitTrue(t, w.inside, func() string { return "the barrier's party not waiting" })
		}
		select {
		case err := <-done:
			t.Fatalf("wait on %s returned before the delete: %v", w.key, err)
		case <-time.After(300 * time.Millisecond): // waiting (or about to)
		}
		if w.purge {
			err = kv.Purge(ctx, w.key)
		} else {
			err = kv.Delete(ctx, w.key)
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, manager.ErrNoObject) {
				t.Errorf("wait on %s deleted: %v, want ErrNoObject", w.key, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("wait on %s still waiting 5 s after its key was deleted", w.key)
		}
	}
}

// TestManagerLockKeyDeleted: a peer deletes the key of a held Lock. The
// lock is then free: another proxy takes it (with a greater token) while
// the first holder still believes it holds it, and the first learns it
// at its Release (ErrLeaseLost), as for a lease that ran out; this is
// what the package documentation states. A peer that writes the key
// without a lease holds the lock until it deletes it: an acquirer waits
// (until its ctx ends). A forged expiry gives the next acquirer an
// OwnerDiedError.
func TestManagerLockKeyDeleted(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	kv, _ := peerKV(t, c)
	a, err := manager.NewLock(ctx, m, manager.Named("lk"), manager.Lease(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	b, err := manager.NewLock(ctx, m, manager.Named("lk"), manager.Lease(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	ta := a.Token()
	if err := kv.Delete(ctx, objKey("l.", "lk")); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx); err != nil {
		t.Fatalf("Acquire after a peer deleted the key: %v", err)
	}
	if tb := b.Token(); tb <= ta {
		t.Errorf("token of the second holder %d, not above the first's %d", tb, ta)
	}
	if err := a.Release(ctx); !errors.Is(err, manager.ErrLeaseLost) {
		t.Errorf("Release of the first holder: %v, want ErrLeaseLost", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Errorf("Release of the second holder: %v", err)
	}

	// A holder record with no lease, and one that does not parse.
	for _, v := range [][]byte{cbor(t, []any{"peer", 1, "host"}), {0xff}} {
		if _, err := kv.Put(ctx, objKey("l.", "lk"), v); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := a.Acquire(short)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire of a lock a peer holds: %v, want the deadline", err)
		}
		if locked, err := a.Locked(ctx); err != nil || !locked {
			t.Errorf("Locked = %v %v", locked, err)
		}
		if err := kv.Delete(ctx, objKey("l.", "lk")); err != nil {
			t.Fatal(err)
		}
		if err := a.Acquire(ctx); err != nil {
			t.Fatalf("Acquire once the peer deleted its key: %v", err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// A forged expiry of the free lock: its next acquirer is told that
	// the owner died, as the documentation states.
	js := peerJS(t, peerConn(t, c))
	marker := &nats.Msg{Subject: kvSubject + objKey("l.", "lk"), Header: nats.Header{jetstream.MarkerReasonHeader: []string{"MaxAge"}}}
	if _, err := js.PublishMsg(ctx, marker); err != nil {
		t.Fatal(err)
	}
	if err := a.Acquire(ctx); !errors.Is(err, mp.ErrOwnerDied) {
		t.Errorf("Acquire after a forged expiry: %v, want ErrOwnerDied", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestManagerQueueForeignMessages: a peer publishes on a Queue's subject
// payloads that do not decode (garbage, truncated, the server's largest),
// with headers; each Get takes one and returns the item or the decoding
// error, in time, and Qsize counts what the stream holds.
func TestManagerQueueForeignMessages(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	nc := peerConn(t, c)
	js := peerJS(t, nc)
	q, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}
	subject := queuePrefix + objKey("", "q")
	big := make([]byte, nc.MaxPayload()-1024)
	big[0] = 0x5a // a byte string of 2^32-1 bytes, truncated
	big[1], big[2], big[3], big[4] = 0xff, 0xff, 0xff, 0xff
	payloads := [][]byte{{0xff}, {}, {0x1b, 0xff}, big, codec.AppendText(nil, "not an int"), codec.AppendInt(nil, 7)}
	for i, p := range payloads {
		msg := &nats.Msg{Subject: subject, Data: p, Header: nats.Header{"X-Peer": []string{strconv.Itoa(i)}, "KV-Operation": []string{"DEL"}}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := q.Qsize(ctx); err != nil || n != len(payloads) {
		t.Fatalf("Qsize = %v %v, want %d", n, err, len(payloads))
	}
	for i := range payloads {
		gctx := testCtx(t, 10*time.Second)
		v, err := q.Get(gctx)
		if i == len(payloads)-1 {
			if err != nil || v != 7 {
				t.Errorf("Get of the good item = %v %v", v, err)
			}
		} else if err == nil || gctx.Err() != nil {
			t.Errorf("Get of payload %d: %v %v, want a decoding error", i, v, err)
		}
	}
	if n, err := q.Qsize(ctx); err != nil || n != 0 {
		t.Errorf("Qsize after the Gets = %v %v, want 0", n, err)
	}
	if err := q.Put(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if v, err := q.Get(ctx); err != nil || v != 8 {
		t.Errorf("Get after the foreign items = %v %v", v, err)
	}
}

// awaitGetWaiting waits until a Get's request for an item of queue name
// is at the server, on the queue's consumer (which a Get makes anew once
// it hears of its deletion).
func awaitGetWaiting(t *testing.T, ctx context.Context, stream jetstream.Stream, name string) {
	t.Helper()
	waiting := 0
	var lastErr error
	awaitTrue(t, func() bool {
		cons, err := stream.Consumer(ctx, "q_"+objKey("", name))
		if lastErr = err; err != nil {
			return false // deleted, not made anew yet
		}
		info, err := cons.Info(ctx)
		if err == nil {
			waiting = info.NumWaiting
		}
		return waiting > 0
	}, func() string {
		return fmt.Sprintf("no Get waits on the consumer of queue %s (%d requests, lookup: %v)", name, waiting, lastErr)
	})
}

// queueWithConsumer makes the Queue "q" of m and its consumer (a Put and
// a Get), and returns it with the queues' stream, seen by a peer.
func queueWithConsumer(t *testing.T, ctx context.Context, c *Cluster, m *manager.Manager) (jetstream.Stream, *manager.Queue[int]) {
	t.Helper()
	stream, err := peerJS(t, peerConn(t, c)).Stream(ctx, queueStream)
	if err != nil {
		t.Fatal(err)
	}
	q, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := q.Get(ctx); err != nil || v != 1 { // the consumer is made
		t.Fatalf("Get = %v %v", v, err)
	}
	return stream, q
}

// A Get that remakes its queue's consumer, deleted by a peer, while the
// server still deletes it has its attempt refused (the server took it
// for an update, and found the consumer gone; or it failed to write the
// consumer's files as they were removed): it tries again, and takes the
// next item put. The hook makes the refusal happen, which the race with
// the server's deletion gave about once in thirty runs of
// TestManagerQueueConsumerDeleted.
func TestManagerQueueConsumerRemadeWhileDeleted(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	stream, q := queueWithConsumer(t, ctx, c, m)
	var refused atomic.Bool
	testHookQueueConsumer = func() error {
		if refused.CompareAndSwap(false, true) {
			// As the server answers.
			return &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeConsumerDoesNotExist, Description: "consumer does not exist"}
		}
		return nil
	}
	t.Cleanup(func() { testHookQueueConsumer = nil })
	got := make(chan error, 1)
	go func() {
		v, err := q.Get(testCtx(t, 20*time.Second))
		if err == nil && v != 2 {
			err = fmt.Errorf("got %d, want 2", v)
		}
		got <- err
	}()
	awaitGetWaiting(t, ctx, stream, "q")
	if err := stream.DeleteConsumer(ctx, "q_"+objKey("", "q")); err != nil {
		t.Fatal(err)
	}
	awaitGetWaiting(t, ctx, stream, "q")
	if !refused.Load() {
		t.Fatal("the Get made its consumer anew without the hook")
	}
	if err := q.Put(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("Get whose consumer was remade while deleted: %v", err)
	}
}

// TestManagerQueueConsumerDeleted: a peer deletes the durable consumer
// of a Queue (or purges its subject) while a Get waits: the Get goes on
// waiting (within its ctx) and takes the next item put.
func TestManagerQueueConsumerDeleted(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	js := peerJS(t, peerConn(t, c))
	q, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}
	q2, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := q.Get(ctx); err != nil || v != 1 {
		t.Fatalf("Get = %v %v", v, err)
	}
	stream, err := js.Stream(ctx, queueStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, purge := range []bool{true, false} {
		got := make(chan error, 1)
		go func() {
			gctx := testCtx(t, 20*time.Second)
			v, err := q.Get(gctx)
			if err == nil && v != 2 {
				err = fmt.Errorf("got %d, want 2", v)
			}
			got <- err
		}()
		awaitGetWaiting(t, ctx, stream, "q") // the Get is waiting
		if purge {
			err = stream.Purge(ctx, jetstream.WithPurgeSubject(queuePrefix+objKey("", "q")))
		} else {
			err = stream.DeleteConsumer(ctx, "q_"+objKey("", "q"))
		}
		if err != nil {
			t.Fatal(err)
		}
		awaitGetWaiting(t, ctx, stream, "q") // again, on the consumer made anew if it was deleted
		if err := q2.Put(ctx, 2); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Errorf("Get waiting when a peer purged (%v) or deleted the consumer: %v", purge, err)
		}
	}
	// Deleted while no Get waits: the next Get finds no consumer.
	if err := stream.DeleteConsumer(ctx, "q_"+objKey("", "q")); err != nil {
		t.Fatal(err)
	}
	if err := q2.Put(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if v, err := q.Get(testCtx(t, 5*time.Second)); err != nil || v != 3 {
		t.Errorf("Get after a peer deleted the consumer = %v %v, want 3", v, err)
	}
}

// racer writes value under key from the peer's connection as fast as
// the server takes it until the test ends.
func racer(t *testing.T, c *Cluster, key string, value []byte) {
	t.Helper()
	js, err := jetstream.New(peerConn(t, c), jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				<-js.PublishAsyncComplete()
				return
			default:
			}
			js.PublishAsync(kvSubject+key, value)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// TestManagerCASRaced: a peer writes a Value's key (the same value each
// time), a Semaphore's and a List's as fast as it can. A Swap, a
// CompareAndSwap, a Release and an Append, whose ctx is far, each end
// within a few seconds, having made their write or with ErrContended:
// the loop that retries a write overtaken by another backs off and
// gives up after a bounded number of rounds.
func TestManagerCASRaced(t *testing.T) {
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	v, err := manager.NewValue(ctx, m, 1, manager.Named("v"))
	if err != nil {
		t.Fatal(err)
	}
	sem, err := manager.NewSemaphore(ctx, m, 1, manager.Named("sem"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := manager.NewList(ctx, m, []int{1}, manager.Named("l"))
	if err != nil {
		t.Fatal(err)
	}
	racer(t, c, objKey("v.", "v"), codec.AppendInt(nil, 1))
	racer(t, c, objKey("s.", "sem"), cbor(t, [2]int{1, -1}))
	racer(t, c, objKey("L.", "l"), cbor(t, []int{1}))
	calls := map[string]func() error{
		"Swap": func() error { _, err := v.Swap(ctx, 1); return err },
		"CompareAndSwap": func() error {
			ok, err := v.CompareAndSwap(ctx, 1, 1)
			if err == nil && !ok {
				err = errors.New("CompareAndSwap of the value it holds failed")
			}
			return err
		},
		"Release": func() error { return sem.Release(ctx) },
		"Append":  func() error { return l.Append(ctx, 2) },
	}
	for name, call := range calls {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, manager.ErrContended) {
				t.Errorf("%s raced by a peer: %v, want nil or ErrContended", name, err)
			}
			t.Logf("%s raced by a peer: %v", name, err)
		case <-time.After(15 * time.Second):
			t.Fatalf("%s raced by a peer still going after 15 s", name)
		}
	}
}

// TestManagerStreamsDeleted: a peer deletes the queues' stream, then the
// bucket. Calls whose ctx is far return an error within about
// streamGone (a write that no stream answers is retried only as long as
// a failover's election could last; lowered here to 2 s), rather than
// retry until their ctx ends.
func TestManagerStreamsDeleted(t *testing.T) {
	old := streamGone
	t.Cleanup(func() { streamGone = old }) // after the manager's close
	streamGone = 2 * time.Second
	c, m := startManager(t)
	ctx := testCtx(t, 120*time.Second)
	js := peerJS(t, peerConn(t, c))
	q, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := manager.NewValue(ctx, m, 1, manager.Named("v"))
	if err != nil {
		t.Fatal(err)
	}
	bounded := func(what string, call func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if err == nil || ctx.Err() != nil {
				t.Errorf("%s: %v, want an error", what, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s still going 15 s after", what)
		}
	}
	if err := js.DeleteStream(ctx, queueStream); err != nil {
		t.Fatal(err)
	}
	bounded("Put to a deleted stream", func() error { return q.Put(ctx, 1) })
	if err := js.DeleteKeyValue(ctx, kvBucket); err != nil {
		t.Fatal(err)
	}
	bounded("Set of a deleted bucket", func() error { return v.Set(ctx, 2) })
}

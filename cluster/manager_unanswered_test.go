//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp/manager"
)

// The manager's requests that find no one to answer them (no
// responders: a stream or a consumer whose leader is being elected, a
// consumer being made anew) are tried again within a bound: a write for
// streamGone, a queue's pull and ack for leaderWait. Each test below
// makes the window open while the call is inside it, sees the call meet
// it (testHookUnanswered), then either closes it, and the call succeeds,
// or keeps it open past the bound, and the call fails with the error of
// no responders.

// watchUnanswered sets testHookUnanswered for the test and returns the
// sites it reports.
func watchUnanswered(t *testing.T) <-chan string {
	t.Helper()
	sites := make(chan string, 4096)
	testHookUnanswered = func(site string) {
		select {
		case sites <- site:
		default:
		}
	}
	t.Cleanup(func() { testHookUnanswered = nil }) // after the manager's close
	return sites
}

// awaitUnanswered waits, 10 s at most, until a request at site found no
// one to answer it.
func awaitUnanswered(t *testing.T, sites <-chan string, site string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-sites:
			if s == site {
				return
			}
		case <-deadline:
			t.Fatalf("no request at %s found no one to answer it in 10 s", site)
		}
	}
}

// background runs calls in the background; the test's end waits for
// them (after their ctx ends, before the hooks are reset: make it after
// the hooks are set and before the ctx is).
type background struct{ wg sync.WaitGroup }

func newBackground(t *testing.T) *background {
	b := &background{}
	t.Cleanup(b.wg.Wait)
	return b
}

// run runs call and returns its error's channel.
func (b *background) run(call func() error) <-chan error {
	done := make(chan error, 1)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		done <- call()
	}()
	return done
}

// awaitCall waits for a call's error, within bound.
func awaitCall(t *testing.T, what string, done <-chan error, bound time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(bound):
		t.Fatalf("%s still going after %v", what, bound)
		return nil
	}
}

// wantUnanswered fails the test unless err is that of a request no one
// answered.
func wantUnanswered(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("%s: %v, want no responders", what, err)
	}
}

// setLeaderWait sets leaderWait to d for the test (restored after the
// manager's close, which the test's cleanup does first).
func setLeaderWait(t *testing.T, d time.Duration) {
	old := leaderWait
	t.Cleanup(func() { leaderWait = old })
	leaderWait = d
}

// refuseConsumer sets testHookQueueConsumer for the test: the attempts to
// make a queue's consumer fail with err while the count it returns is
// not 0, each taking one off (below 0: all fail).
func refuseConsumer(t *testing.T, err error) *atomic.Int32 {
	refuse := new(atomic.Int32)
	testHookQueueConsumer = func() error {
		if refuse.Load() != 0 {
			refuse.Add(-1)
			return err
		}
		return nil
	}
	t.Cleanup(func() { testHookQueueConsumer = nil })
	return refuse
}

// parkSubjects takes its subjects from the stream name, which then
// answers no write on them (no responders, as while its leader is
// elected), and returns the function that gives them back.
func parkSubjects(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) (restore func()) {
	t.Helper()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	parked := cfg
	parked.Subjects = []string{"mptest.parked." + name}
	if _, err := js.UpdateStream(ctx, parked); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// A write (a queue's Put) that no stream answers is tried again: it
// succeeds, once, when the stream answers again; it fails with the error
// of no responders once it has found none for streamGone.
func TestManagerWriteUnanswered(t *testing.T) {
	old := streamGone
	t.Cleanup(func() { streamGone = old }) // after the manager's close
	sites := watchUnanswered(t)
	bg := newBackground(t)
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	js := peerJS(t, peerConn(t, c))
	q, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}

	restore := parkSubjects(t, ctx, js, queueStream)
	done := bg.run(func() error { return q.Put(ctx, 7) })
	awaitUnanswered(t, sites, "publish")
	restore()
	if err := awaitCall(t, "Put once the stream answers again", done, streamGone); err != nil {
		t.Fatalf("Put once the stream answers again: %v", err)
	}
	if n, err := q.Qsize(ctx); err != nil || n != 1 {
		t.Errorf("Qsize = %d, %v; want the item stored once", n, err)
	}
	if v, err := q.Get(ctx); err != nil || v != 7 {
		t.Fatalf("Get = %v, %v; want 7", v, err)
	}

	streamGone = time.Second
	restore = parkSubjects(t, ctx, js, queueStream)
	start := time.Now()
	err = awaitCall(t, "Put to a stream that never answers", bg.run(func() error { return q.Put(ctx, 8) }), 15*time.Second)
	wantUnanswered(t, "Put to a stream that never answers", err)
	if d := time.Since(start); d < streamGone {
		t.Errorf("Put gave up after %v, before streamGone (%v)", d, streamGone)
	}
	restore()
	if err := q.Put(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if v, err := q.Get(ctx); err != nil || v != 9 {
		t.Errorf("Get = %v, %v; want 9 (8 was not stored)", v, err)
	}
}

// A queue's Get whose pull no one answers (its consumer deleted, and
// made anew by no one yet) is tried again: it takes the item once the
// consumer answers again, made by another program (as a consumer whose
// leader is elected) or by the Get itself after its first attempt to
// make it failed (as when the server does not answer: before the fix,
// the Get tried once, then pulled in vain until leaderWait); it fails
// with the error of no responders once no one has answered for
// leaderWait.
func TestManagerTakeUnanswered(t *testing.T) {
	setLeaderWait(t, 3*time.Second)
	sites := watchUnanswered(t)
	refuse := refuseConsumer(t, errors.New("test: no answer"))
	bg := newBackground(t)
	c, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	stream, q := queueWithConsumer(t, ctx, c, m)
	name := "q_" + objKey("", "q")
	cons, err := stream.Consumer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	get := func(want int) error {
		v, err := q.Get(ctx)
		if err == nil && v != want {
			err = fmt.Errorf("got %d, want %d", v, want)
		}
		return err
	}
	for i, byOther := range []bool{true, false} {
		// A Get that makes the consumer, which the Get keeps, as the
		// first one did (a Get whose attempt to make it failed keeps
		// none).
		refuse.Store(0)
		item := 10 * (i + 1)
		if err := q.Put(ctx, item); err != nil {
			t.Fatal(err)
		}
		if err := get(item); err != nil {
			t.Fatal(err)
		}
		item++
		if err := q.Put(ctx, item); err != nil {
			t.Fatal(err)
		}
		if byOther {
			refuse.Store(-1)
		} else {
			refuse.Store(1)
		}
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		done := bg.run(func() error { return get(item) })
		awaitUnanswered(t, sites, "take")
		if byOther { // the Get's own attempts still fail
			if _, err := stream.CreateOrUpdateConsumer(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := awaitCall(t, "Get", done, 2*leaderWait); err != nil {
			t.Errorf("Get whose consumer answers again (made by another: %v): %v", byOther, err)
		} else if d := time.Since(start); d > leaderWait {
			t.Errorf("Get whose consumer answers again (made by another: %v) took %v, more than leaderWait", byOther, d)
		}
	}

	leaderWait = time.Second
	refuse.Store(-1)
	if err := stream.DeleteConsumer(ctx, name); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = awaitCall(t, "Get that no one answers", bg.run(func() error { return get(0) }), 15*time.Second)
	wantUnanswered(t, "Get that no one answers", err)
	if d := time.Since(start); d < leaderWait {
		t.Errorf("Get gave up after %v, before leaderWait (%v)", d, leaderWait)
	}
	refuse.Store(0)
	if err := q.Put(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := get(5); err != nil {
		t.Errorf("Get once the consumer can be made: %v", err)
	}
}

// A queue's ack that no one answers (held here by testHookAck, which
// answers as the client library does when the consumer has no leader)
// is tried again: the Get returns the item once an ack is answered, and
// the item is gone; it fails with the error of no responders once no
// one has answered for leaderWait, and the item, not taken, comes back.
func TestManagerAckUnanswered(t *testing.T) {
	setLeaderWait(t, 3*time.Second)
	sites := watchUnanswered(t)
	var unanswered atomic.Bool
	testHookAck = func() error {
		if unanswered.Load() {
			return nats.ErrNoResponders
		}
		return nil
	}
	t.Cleanup(func() { testHookAck = nil })
	bg := newBackground(t)
	_, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	q, err := manager.NewQueue[int](ctx, m, 0, manager.Named("q"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(want int) error {
		v, err := q.Get(ctx)
		if err == nil && v != want {
			err = fmt.Errorf("got %d, want %d", v, want)
		}
		return err
	}
	if err := q.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	unanswered.Store(true)
	done := bg.run(func() error { return get(1) })
	awaitUnanswered(t, sites, "ack")
	unanswered.Store(false)
	if err := awaitCall(t, "Get", done, leaderWait); err != nil {
		t.Errorf("Get whose ack is answered again: %v", err)
	}
	if n, err := q.Qsize(ctx); err != nil || n != 0 {
		t.Errorf("Qsize = %d, %v after the Get; want 0", n, err)
	}

	leaderWait = time.Second
	if err := q.Put(ctx, 2); err != nil {
		t.Fatal(err)
	}
	unanswered.Store(true)
	start := time.Now()
	err = awaitCall(t, "Get whose ack no one answers", bg.run(func() error { return get(2) }), 15*time.Second)
	wantUnanswered(t, "Get whose ack no one answers", err)
	if d := time.Since(start); d < leaderWait {
		t.Errorf("Get gave up after %v, before leaderWait (%v)", d, leaderWait)
	}
	unanswered.Store(false)
	// Not taken: it comes back after the ack wait.
	if err := awaitCall(t, "Get of the item not taken", bg.run(func() error { return get(2) }), 3*queueAckWait); err != nil {
		t.Errorf("Get of the item whose ack no one answered: %v", err)
	}
}

// A Get whose queue's consumer this program has not made yet, and whose
// attempts to make it the server does not answer (no responders, as
// while JetStream's meta leader is elected), makes it again until it is
// answered, within leaderWait, and takes the item; past leaderWait it
// fails with the error of no responders. (It failed at its first
// attempt.)
func TestManagerTakeConsumerUnanswered(t *testing.T) {
	setLeaderWait(t, 3*time.Second)
	sites := watchUnanswered(t)
	refuse := refuseConsumer(t, nats.ErrNoResponders)
	bg := newBackground(t)
	_, m := startManager(t)
	ctx := testCtx(t, 60*time.Second)
	for i, name := range []string{"answered", "unanswered"} {
		q, err := manager.NewQueue[int](ctx, m, 0, manager.Named(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
		if name == "answered" {
			refuse.Store(3)
		} else {
			leaderWait = time.Second
			refuse.Store(-1)
		}
		start := time.Now()
		done := bg.run(func() error {
			v, err := q.Get(ctx)
			if err == nil && v != i {
				err = fmt.Errorf("got %d, want %d", v, i)
			}
			return err
		})
		awaitUnanswered(t, sites, "consumer")
		err = awaitCall(t, "Get", done, 15*time.Second)
		d := time.Since(start)
		if name == "answered" {
			if err != nil {
				t.Errorf("Get whose consumer is made at the 4th attempt: %v", err)
			}
			continue
		}
		wantUnanswered(t, "Get whose consumer is never made", err)
		if d < leaderWait {
			t.Errorf("Get gave up after %v, before leaderWait (%v)", d, leaderWait)
		}
	}
}

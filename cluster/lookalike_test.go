//go:build linux

package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
)

// A peer's stored status lookalike (see dropStatusLookalikes) ends the
// pool's reading of its results with many results stored after it, on a
// slow link: each request for a stored result takes 25 ms (in
// testHookGetResult, once they are all stored). The pool reads its
// results again all the same, once: every call has its result, and the
// reading ended once. Only the results the ended reading was given are
// looked at (here the lookalike). On the old code, one deadline of 5 s
// bounded the requests for the first 1000 results, 251 here: each attempt
// failed at it, and the pool never read its results again.
func TestResultsResumeOnSlowLink(t *testing.T) { resultsResumeOnSlowLink(t, false) }

// As TestResultsResumeOnSlowLink, with the pool's consumer of results
// deleted by the peer first (which ends the reading), the lookalike and
// the results stored after: with no consumer to say which results it
// gave, the pool looks at its first results, 251 requests of 25 ms, each
// under its own timeout, more than the 5 s of one.
func TestResultsResumeOnSlowLinkConsumerDeleted(t *testing.T) { resultsResumeOnSlowLink(t, true) }

func resultsResumeOnSlowLink(t *testing.T, deleteConsumer bool) {
	const n = 250
	stored := make(chan struct{})
	var storedOnce sync.Once
	allStored := func() { storedOnce.Do(func() { close(stored) }) }
	testHookGetResult = func() {
		select {
		case <-stored:
		case <-time.After(30 * time.Second):
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Cleanup(func() { testHookGetResult = nil })
	var logs lockedBuffer
	c := startCluster(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(allStored) // before the cluster closes, if the test fails
	nc := peerConn(t, c)
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	send := resultSender{t, nc, peerJS(t, nc), s}
	calls := queueCalls(t, c, pool, n)
	if deleteConsumer {
		if err := send.js.DeleteConsumer(testCtx(t, 10*time.Second), resultStream, resultDurable(s.inst, 0)); err != nil {
			t.Fatal(err)
		}
	}
	lookalike := &nats.Msg{Subject: resPrefix + s.inst, Header: nats.Header{"Status": {"409"}, "Description": {"Consumer Deleted"}}}
	if _, err := send.js.PublishMsg(testCtx(t, 10*time.Second), lookalike); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := resultMsg{Job: uint64(i + 1), Kind: resOK, Payload: encoded(t, 100+i)}
		send.stream(r.appendTo(nil))
	}
	allStored()
	bound := time.After(40 * time.Second) // before the calls' ctx ends
	for i, cl := range calls {
		select {
		case <-cl.in:
		case <-bound:
			t.Fatalf("%d of %d calls have their result after 40 s: %s", i, n, logs.String())
		}
		if cl.v != 100+i || cl.err != nil {
			t.Errorf("call %d: got %v, %v", i+1, cl.v, cl.err)
		}
	}
	if k := strings.Count(logs.String(), "results ended"); k != 1 {
		t.Errorf("the pool's reading of its results ended %d times, want once", k)
	}
	if strings.Contains(logs.String(), "read the pool's results") {
		t.Errorf("an attempt to read the results again failed: %s", logs.String())
	}
	// The lookalike deleted, the results acknowledged: nothing of the
	// pool's is left in the stream.
	send.awaitNoneStored()
}

// A lookalike stored after the results the ended reading was given (here
// once the pool has asked which they were) is left by that look: it ends
// the next reading, once, and is deleted then. The calls have their
// results, and nothing of the pool's is left stored.
func TestLookalikeStoredAfterRange(t *testing.T) {
	later := make(chan func(), 1)
	testHookGetResult = func() {
		select {
		case f := <-later:
			f()
		default:
		}
	}
	t.Cleanup(func() { testHookGetResult = nil })
	var logs lockedBuffer
	c := startCluster(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	nc := peerConn(t, c)
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	send := resultSender{t, nc, peerJS(t, nc), s}
	calls := queueCalls(t, c, pool, 2)
	lookalike := func() error {
		m := &nats.Msg{Subject: resPrefix + s.inst, Header: nats.Header{"Status": {"409"}, "Description": {"Consumer Deleted"}}}
		_, err := send.js.PublishMsg(testCtx(t, 10*time.Second), m)
		return err
	}
	later <- func() {
		if err := lookalike(); err != nil {
			t.Errorf("the second lookalike: %v", err)
		}
	}
	if err := lookalike(); err != nil {
		t.Fatal(err)
	}
	for i := range calls {
		r := resultMsg{Job: uint64(i + 1), Kind: resOK, Payload: encoded(t, 100+i)}
		send.stream(r.appendTo(nil))
	}
	for i, cl := range calls {
		<-cl.in
		if cl.v != 100+i || cl.err != nil {
			t.Errorf("call %d: got %v, %v", i+1, cl.v, cl.err)
		}
	}
	send.awaitNoneStored()
	if len(later) != 0 {
		t.Fatal("the pool did not look at the results it was given")
	}
	if k := strings.Count(logs.String(), "results ended"); k != 2 {
		t.Errorf("the pool's reading of its results ended %d times, want twice: %s", k, logs.String())
	}
	if strings.Contains(logs.String(), "read the pool's results") {
		t.Errorf("an attempt to read the results again failed: %s", logs.String())
	}
}

// awaitNoneStored waits until nothing of the pool's is left in the
// stream of results (its results acknowledged, lookalikes deleted).
func (r resultSender) awaitNoneStored() {
	t := r.t
	t.Helper()
	st, err := r.js.Stream(testCtx(t, 10*time.Second), resultStream)
	if err != nil {
		t.Fatal(err)
	}
	var left error
	awaitTrue(t, func() bool {
		_, left = st.GetMsg(testCtx(t, 10*time.Second), 1, jetstream.WithGetMsgSubject(resPrefix+r.s.inst))
		return errors.Is(left, jetstream.ErrMsgNotFound)
	}, func() string { return fmt.Sprintf("the pool's results are still stored: %v", left) })
}

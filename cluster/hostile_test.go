//go:build linux

package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/go-mp/mp"
)

// Hostile peers: a client that can connect to the NATS server (it has
// the credentials) and publishes what it likes on the subjects the pools
// and workers use. Whatever it sends, it must not crash, stall or
// corrupt a pool, a worker or the server's streams.

// peerConn connects a raw NATS client, the hostile peer, to c; the test
// closes it.
func peerConn(t *testing.T, c *Cluster) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.Name("hostile peer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// queueOne submits a call of double through pool, which has no worker,
// and waits until its task is queued in the stream; the call ends with
// the test.
func queueOne(t *testing.T, c *Cluster, pool *mp.Pool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		double.Apply(ctx, pool, 1)
	}()
	t.Cleanup(func() { cancel(); <-done })
	awaitStreamMsgs(t, c, 1)
}

// awaitStreamMsgs waits, 10 s at most, until the stream of tasks holds n
// messages.
func awaitStreamMsgs(t *testing.T, c *Cluster, n uint64) {
	t.Helper()
	bound := testCtx(t, 10*time.Second)
	for {
		info, err := c.conn.tasks.Info(bound)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == n {
			return
		}
		if bound.Err() != nil {
			t.Fatalf("%d tasks in the stream, want %d", info.State.Msgs, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncDirect sends the pool a result directly, as a worker does, and
// waits for the pool's answer: the pool handles the results sent
// directly in order, so the messages sent before are handled too.
func syncDirect(t *testing.T, nc *nats.Conn, s *session) {
	t.Helper()
	r := resultMsg{Job: 1 << 60, Index: 0, Kind: resOK}
	if _, err := nc.Request(directPrefix+s.inst, r.appendTo(nil), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A result sent directly names the subject of its answer (its reply): a
// peer that names a subject of the JetStream API there must not have the
// pool publish to it, as the pool's empty answer (to a message without
// the header ackToHeader) is a request to purge a stream whole, or to
// delete it. The pool answers on inboxes only.
func TestDirectAnswersOnlyInboxes(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	queueOne(t, c, pool)
	nc := peerConn(t, c)
	r := resultMsg{Job: 1 << 60, Index: 0, Kind: resOK}
	for _, reply := range []string{"$JS.API.STREAM.PURGE." + taskStream, "$JS.API.CONSUMER.DELETE." + taskStream + "." + taskDurable(c.opts.Pool, s.fp)} {
		if err := nc.PublishMsg(&nats.Msg{Subject: directPrefix + s.inst, Reply: reply, Data: r.appendTo(nil)}); err != nil {
			t.Fatal(err)
		}
	}
	syncDirect(t, nc, s)
	info, err := c.conn.tasks.Info(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("the stream of tasks holds %d tasks after a peer's results, want 1: the pool purged it", info.State.Msgs)
	}
	if _, err := c.conn.tasks.Consumer(testCtx(t, 10*time.Second), taskDurable(c.opts.Pool, s.fp)); err != nil {
		t.Errorf("the tasks' consumer after a peer's results: %v", err)
	}
}

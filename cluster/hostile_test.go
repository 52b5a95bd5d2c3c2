//go:build linux

package cluster

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
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

// peerTask publishes a task of the given header and argument to the
// stream, as a peer may, on a subject of the pool's tasks.
func peerTask(t *testing.T, nc *nats.Conn, s *session, h taskMsg, arg []byte) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := instSubject(s.c.opts.Pool, s.fp, "peer") + "1.0"
	if _, err := js.Publish(testCtx(t, 10*time.Second), subj, append(h.appendHead(nil), arg...)); err != nil {
		t.Fatal(err)
	}
}

// A task whose pool instance (where its result goes) is no instance's
// name: one longer than a NATS server takes in a subject, whose result
// sent there had the server close the worker's connection (here the
// pool's own, shared with its local worker), or one that nats.go refuses
// as a subject, whose result the worker tried to store for ever without
// acknowledging the task. The worker drops such a task as malformed
// (term): the stream is empty, the connection never dropped, and the
// worker serves the next tasks.
func TestTaskBadInstance(t *testing.T) {
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	arg, err := codec.Marshal(21)
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range []string{strings.Repeat("a", 8000), "a b", "a\r\nPUB x 0", "mp.>", "*"} {
		peerTask(t, nc, s, taskMsg{Target: double.Name(), Inst: inst, Job: 1}, arg)
		bound := testCtx(t, 10*time.Second)
		for {
			info, err := c.conn.tasks.Info(bound)
			if err != nil {
				t.Fatalf("instance %.20q: the stream's info: %v (the connection of the pool and its worker is %v)", inst, err, c.conn.nc.Status())
			}
			if n := c.conn.nc.Stats().Reconnects; n != 0 {
				t.Fatalf("instance %.20q: the worker's connection dropped (%d reconnections)", inst, n)
			}
			if info.State.Msgs == 0 {
				break
			}
			if bound.Err() != nil {
				t.Fatalf("instance %.20q: the task is still in the stream after 10 s", inst)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 3)
}

// peerCancel publishes a cancellation as a peer may, and waits until the
// pool's local worker heard a cancellation of its own sent after it (the
// worker handles them in order).
func peerCancel(t *testing.T, nc *nats.Conn, s *session, data []byte) {
	t.Helper()
	if err := nc.Publish(cancelPrefix+s.c.opts.Pool, data); err != nil {
		t.Fatal(err)
	}
	syncCancel(t, nc, s)
}

// syncCancelJob numbers the cancellations syncCancel sends.
var syncCancelJob atomic.Uint64

// syncCancel sends a cancellation of a job of its own and waits until the
// pool's local worker has it: it has handled those sent before.
func syncCancel(t *testing.T, nc *nats.Conn, s *session) {
	t.Helper()
	k := jobKey{"sync", syncCancelJob.Add(1)}
	cm := cancelMsg{Inst: k.inst, Job: k.job, All: true}
	if err := nc.Publish(cancelPrefix+s.c.opts.Pool, cm.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	bound := testCtx(t, 10*time.Second)
	for {
		s.local.mu.Lock()
		has := s.local.cancelled.has(k, 0)
		s.local.mu.Unlock()
		if has {
			return
		}
		if bound.Err() != nil {
			t.Fatal("the worker did not hear a cancellation in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A cancellation naming a pool instance that no pool has (longer than
// maxInst) is dropped: a worker keeps up to cancelLedgerMax of them, and
// each would have held its instance's name, up to the server's max
// payload (1 MiB).
func TestCancelBadInstance(t *testing.T) {
	c := startCluster(t, Options{})
	localWorkerPool(t, c)
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	syncCancel(t, nc, s)
	cm := cancelMsg{Inst: strings.Repeat("a", 512<<10), Job: 1, All: true}
	peerCancel(t, nc, s, cm.appendTo(nil))
	s.local.mu.Lock()
	n := len(s.local.cancelled.jobs)
	s.local.mu.Unlock()
	if n != 2 {
		t.Errorf("the worker keeps %d cancellations, want 2 (its own): it kept one of an instance of 512 KiB", n)
	}
}

// syncHeartbeat sends a heartbeat of a worker of its own, "sync", and
// waits until the pool heard it: it has handled those sent before. The
// first call is made before the pool hears of other workers: "sync" is
// one of them from then on.
func syncHeartbeat(t *testing.T, nc *nats.Conn, s *session) {
	t.Helper()
	s.mu.Lock()
	before := s.peers["sync"].last
	s.mu.Unlock()
	h := heartbeat{ID: "sync", Slots: 1}
	if err := nc.Publish(hbPrefix+s.c.opts.Pool+"."+s.fp, h.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	bound := testCtx(t, 10*time.Second)
	for {
		s.mu.Lock()
		p, ok := s.peers["sync"]
		s.mu.Unlock()
		if ok && p.last.After(before) {
			return
		}
		if bound.Err() != nil {
			t.Fatal("the pool did not hear a heartbeat in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// Heartbeats of workers that do not exist, as many as a peer likes and
// each with the most slots: the pool keeps at most maxPeers workers and
// counts at most maxSlots slots (Pool.Processes, which sizes an Imap's
// window of chunks in flight: a window of billions of chunks is an
// allocation that ends the process); a worker id longer than maxWorkerID
// and a fingerprint longer than maxFingerprint are no worker's.
func TestHeartbeatFlood(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	syncHeartbeat(t, nc, s)
	subj := hbPrefix + c.opts.Pool + "." + s.fp
	for i := range 2 * maxPeers {
		h := heartbeat{ID: "peer" + strconv.Itoa(i), Slots: 1 << 20}
		if err := nc.Publish(subj, h.appendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	long := heartbeat{ID: strings.Repeat("x", 256<<10), Slots: 1}
	if err := nc.Publish(subj, long.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	h := heartbeat{ID: "longfp", Slots: 1}
	if err := nc.Publish(hbPrefix+c.opts.Pool+"."+strings.Repeat("f", 2000), h.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	syncHeartbeat(t, nc, s)
	s.mu.Lock()
	n := len(s.peers)
	_, longID := s.peers[long.ID]
	_, longFP := s.peers["longfp"]
	s.mu.Unlock()
	if n > maxPeers {
		t.Errorf("the pool keeps %d workers heard from, more than %d", n, maxPeers)
	}
	if longID || longFP {
		t.Errorf("the pool keeps a worker of an id of %d bytes (%v) or of a fingerprint of 2000 bytes (%v)", len(long.ID), longID, longFP)
	}
	if p := pool.Processes(); p > maxSlots {
		t.Errorf("Processes %d, more than %d", p, maxSlots)
	}
}

// A purge of a cancelled call's queued task that fails (here the first
// three: as when the server does not answer) is tried again, also after
// the pool ended: the stream is empty once a retry succeeds, and the task
// never runs, not even on a worker that starts afterwards (which heard no
// cancellation).
func TestPurgeRetried(t *testing.T) {
	var purges atomic.Int32
	testHookPurge = func(subject string) error {
		if purges.Add(1) <= 3 {
			return errors.New("test: the purge is lost")
		}
		return nil
	}
	t.Cleanup(func() { testHookPurge = nil })
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t, 30*time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := sleepy.Apply(ctx, pool, [2]int{7, 0})
		done <- err
	}()
	awaitStreamMsgs(t, c, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the call cancelled: %v", err)
	}
	closePool(t, pool) // the retries outlive it
	awaitEmptyStream(t, c)
	if n := purges.Load(); n < 4 {
		t.Errorf("%d purges tried, want 4 at least (3 failed)", n)
	}
	assertNeverRan(t, c, submitOnly(t, c, mp.PoolOptions{}), dir, 7)
}

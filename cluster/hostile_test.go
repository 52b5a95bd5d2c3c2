//go:build linux

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// listen subscribes the peer's connection nc to subject, for the test.
func listen(t *testing.T, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return ch
}

// peerJS is the JetStream of the peer's connection nc.
func peerJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
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
	var msgs uint64
	awaitTrue(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := c.conn.tasks.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		msgs = info.State.Msgs
		return msgs == n
	}, func() string { return fmt.Sprintf("%d tasks in the stream, want %d", msgs, n) })
}

// awaitTrue waits, 10 s at most, until cond holds, or fails the test
// with what says.
func awaitTrue(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	bound := testCtx(t, 10*time.Second)
	for !cond() {
		if bound.Err() != nil {
			t.Fatal(what(), " (after 10 s)")
		}
		time.Sleep(time.Millisecond)
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
	js := peerJS(t, nc)
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
	arg := encoded(t, 21)
	for _, inst := range []string{strings.Repeat("a", 8000), "a b", "a\r\nPUB x 0", "mp.>", "*"} {
		peerTask(t, nc, s, taskMsg{Target: double.Name(), Inst: inst, Job: 1}, arg)
		awaitTrue(t, func() bool {
			if n := c.conn.nc.Stats().Reconnects; n != 0 || c.conn.nc.IsClosed() {
				t.Fatalf("instance %.20q: the connection of the pool and its worker dropped (%d reconnections, %v)", inst, n, c.conn.nc.Status())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			info, err := c.conn.tasks.Info(ctx)
			if err != nil {
				t.Fatalf("instance %.20q: the stream's info: %v", inst, err)
			}
			return info.State.Msgs == 0
		}, func() string { return fmt.Sprintf("instance %.20q: the task is still in the stream", inst) })
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
	// The worker's subscription to cancellations is at the server once
	// its connection is flushed (startNode does not flush it): else the
	// first cancellation, on the peer's connection, could come before it
	// and be lost, as core NATS loses a message no one listens to.
	if err := s.local.cn.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	k := jobKey{"sync", syncCancelJob.Add(1)}
	cm := cancelMsg{Inst: k.inst, Job: k.job, All: true}
	if err := nc.Publish(cancelPrefix+s.c.opts.Pool, cm.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	awaitTrue(t, func() bool {
		s.local.mu.Lock()
		defer s.local.mu.Unlock()
		return s.local.cancelled.has(k, 0)
	}, func() string { return "the worker did not hear a cancellation" })
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
	awaitTrue(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		p, ok := s.peers["sync"]
		return ok && p.last.After(before)
	}, func() string { return "the pool did not hear a heartbeat" })
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
	done := sleepyCall(ctx, pool, 7, 0)
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

// call is a call of double made in the background.
type call struct {
	v   int
	err error
	in  chan struct{} // closed once v and err are set
}

// queueCalls makes n calls of double through pool, which has no worker,
// one after the other once the previous one's task is queued: their jobs
// are 1 to n.
func queueCalls(t *testing.T, c *Cluster, pool *mp.Pool, n int) []*call {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	calls := make([]*call, n)
	for i := range calls {
		cl := &call{in: make(chan struct{})}
		calls[i] = cl
		go func() {
			defer close(cl.in)
			cl.v, cl.err = double.Apply(ctx, pool, i)
		}()
		awaitStreamMsgs(t, c, uint64(i+1))
	}
	return calls
}

// await waits for cl's result, 10 s at most.
func (cl *call) await(t *testing.T) (int, error) {
	t.Helper()
	select {
	case <-cl.in:
		return cl.v, cl.err
	case <-time.After(10 * time.Second):
		t.Fatal("no result in 10 s")
		return 0, nil
	}
}

// resultSender sends results to a pool as a peer may: directly (as a
// request, whose answer says the pool handled it) or through the stream of
// results.
type resultSender struct {
	t  *testing.T
	nc *nats.Conn
	js jetstream.JetStream
	s  *session
}

func (r resultSender) direct(data []byte) {
	r.t.Helper()
	if _, err := r.nc.Request(directPrefix+r.s.inst, data, 10*time.Second); err != nil {
		r.t.Fatal(err)
	}
}

func (r resultSender) stream(data []byte) {
	r.t.Helper()
	if _, err := r.js.Publish(testCtx(r.t, 10*time.Second), resPrefix+r.s.inst, data); err != nil {
		r.t.Fatal(err)
	}
}

func (r resultSender) both(data []byte) { r.direct(data); r.stream(data) }

// encoded encodes a result of double, as a worker does.
func encoded(t *testing.T, v int) []byte {
	t.Helper()
	b, err := codec.OneBytes(new(bytes.Buffer), v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Results from a peer: malformed ones (truncated, of another version or
// kind, of a job or an index that the pool does not have, with varints
// that overflow) settle nothing, sent directly or through the stream; a
// well-formed one for a call in flight is that call's result (a peer
// with the server's credentials can forge a value: see the package doc),
// the first only: a second result for the same call is dropped, and so
// are results for calls settled. The pool serves on.
func TestPeerResults(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	send := resultSender{t, nc, peerJS(t, nc), s}
	calls := queueCalls(t, c, pool, 3) // jobs 1, 2, 3
	res := func(job, idx uint64, kind byte, payload []byte) []byte {
		r := resultMsg{Job: job, Index: idx, Kind: kind, Payload: payload}
		return r.appendTo(nil)
	}
	ok := encoded(t, 5)
	overflow := append([]byte{protoVersion}, bytes.Repeat([]byte{0xff}, 11)...)
	for _, m := range [][]byte{
		{}, {protoVersion}, {protoVersion, 1}, {protoVersion, 1, 0}, // truncated
		{protoVersion + 1, 1, 0, resOK},                    // another version
		res(1, 0, resCancelled+1, ok), res(1, 0, 0xff, ok), // another kind
		res(1<<63, 0, resOK, ok), res(^uint64(0), 0, resOK, ok), res(0, 0, resOK, ok), res(4, 0, resOK, ok), // no such job
		res(1, 1, resOK, ok), res(2, 1<<63, resOK, ok), res(3, ^uint64(0), resOK, ok), // no such index
		overflow,
	} {
		send.both(m)
	}
	// Through the stream in order: once call 2 has the result sent last,
	// the pool has read those before.
	send.stream(res(2, 0, resOK, encoded(t, 999)))
	if v, err := calls[1].await(t); v != 999 || err != nil {
		t.Errorf("call 2: got %v, %v, want the peer's 999", v, err)
	}
	for i, cl := range []*call{calls[0], calls[2]} {
		select {
		case <-cl.in:
			t.Errorf("call %d settled by a malformed result: %v, %v", 2*i+1, cl.v, cl.err)
		default:
		}
	}
	send.both(res(2, 0, resOK, encoded(t, 1000))) // a second result: dropped
	send.direct(res(1, 0, resError, []byte{0xff, 0x00}))
	if _, err := calls[0].await(t); !errors.Is(err, ErrMalformed) {
		t.Errorf("call 1, whose result is an error that does not decode: got %v, want ErrMalformed", err)
	}
	send.stream(res(3, 0, resOK, []byte{0xff, 0x00}))
	if v, err := calls[2].await(t); err == nil {
		t.Errorf("call 3, whose result does not decode: got %v", v)
	}
	for job := range uint64(4) { // settled: dropped
		send.both(res(job, 0, resOK, ok))
	}
	if calls[1].v != 999 {
		t.Errorf("call 2 got %d after a second result", calls[1].v)
	}
	startWorker(t, c, "1")
	awaitWorkers(t, c, 1)
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 3)
}

// Tasks from a peer, for an instance "peer" that the test answers for
// (it reads the results sent to it directly, as a pool does): a task
// that does not parse is dropped (terminated in the stream); one for a
// target this build does not have, or whose argument does not decode,
// fails with its error; the timeout is the task's, whatever its value.
// The worker's one slot serves on.
func TestPeerTasks(t *testing.T) {
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	results := make(chan resultMsg, 64)
	sub, err := nc.Subscribe(directPrefix+"peer", func(m *nats.Msg) {
		var r resultMsg
		if r.parse(m.Data) == nil {
			r.Payload = bytes.Clone(r.Payload)
			results <- r
		}
		m.Respond(nil) // as a pool of an earlier version: the worker acknowledges its task
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	h := func(job uint64) taskMsg { return taskMsg{Target: double.Name(), Inst: "peer", Job: job} }
	arg := encoded(t, 21)
	js := peerJS(t, nc)
	raw := func(data []byte) {
		if _, err := js.Publish(testCtx(t, 10*time.Second), instSubject(c.opts.Pool, s.fp, "peer")+"1.0", data); err != nil {
			t.Fatal(err)
		}
	}
	// Malformed: dropped.
	first := h(1)
	head := first.appendHead(nil)
	noTarget := taskMsg{Inst: "peer", Job: 1}
	for _, m := range [][]byte{{}, {protoVersion}, head[:len(head)-1], append([]byte{protoVersion + 1}, head[1:]...),
		noTarget.appendHead(nil), append([]byte{protoVersion, 0}, bytes.Repeat([]byte{0xff}, 11)...)} {
		raw(m)
	}
	// Well-formed, each its own job number; what each gives.
	want := map[uint64]string{}
	task := func(tm taskMsg, arg []byte, what string) {
		want[tm.Job] = what
		peerTask(t, nc, s, tm, arg)
	}
	unknown := h(2)
	unknown.Target = "cluster.test.nosuch"
	task(unknown, arg, "error")
	chunk := h(3)
	chunk.Chunk = true
	task(chunk, arg[:3], "error")
	task(h(4), make([]byte, 900<<10), "error") // an int of 900 KiB
	long := h(5)
	long.Timeout = 1 << 62
	task(long, arg, "42")
	short := h(6) // times out, unless it is done within its nanosecond
	short.Timeout = 1
	task(short, encoded(t, 0), "timeout")
	huge := h(1<<63 + 7)
	huge.Index = ^uint64(0)
	task(huge, arg, "42")
	got := map[uint64]string{}
	deadline := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case r := <-results:
			switch r.Kind {
			case resOK:
				var v int
				if err := codec.DecodeOne(r.Payload, &v); err != nil {
					t.Fatal(err)
				}
				got[r.Job] = strconv.Itoa(v)
			case resError:
				got[r.Job] = "error"
			case resTimeout:
				got[r.Job] = "timeout"
			default:
				got[r.Job] = "lost"
			}
			if r.Job == huge.Job && r.Index != huge.Index {
				t.Errorf("the result of a task of index %d came with index %d", huge.Index, r.Index)
			}
		case <-deadline:
			t.Fatalf("results in 30 s: %v, want %v", got, want)
		}
	}
	for job, w := range want {
		if got[job] != w && !(w == "timeout" && got[job] == "0") {
			t.Errorf("task of job %d: got %s, want %s", job, got[job], w)
		}
	}
	awaitEmptyStream(t, c)
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 3)
}

// A task given twice to one worker at the same time (a peer's copy of
// it, or a redelivery after the ack wait while the first still runs): a
// cancellation stops both, each gets its progress reports, and the end
// of one leaves the other tracked.
func TestTaskTwiceOnOneWorkerCancelled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envDir, dir) // for the pool's local worker processes
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(t, pool) })
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	done := sleepyCall(ctx, pool, 7, 60000)
	awaitStarts(t, dir, 1)
	// The peer's copy, stored again in the stream.
	nc := peerConn(t, c)
	js := peerJS(t, nc)
	st, err := js.Stream(ctx, taskStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, m.Subject, m.Data); err != nil {
		t.Fatal(err)
	}
	awaitStarts(t, dir, 2)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	awaitStopped(t, c, dir, 2)
}

// A flood of cancellations, of as many jobs and tasks as a peer likes:
// a worker keeps at most cancelLedgerMax of them, the newest, each of a
// bounded size (an instance of at most maxInst bytes); the last ones sent
// are among them.
func TestCancelFlood(t *testing.T) {
	c := startCluster(t, Options{})
	localWorkerPool(t, c)
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	inst := strings.Repeat("p", maxInst)
	const jobs = cancelLedgerMax + 1000
	for job := range uint64(jobs) {
		cm := cancelMsg{Inst: inst, Job: job, All: job%2 == 0, Idx: job}
		if err := nc.Publish(cancelPrefix+c.opts.Pool, cm.appendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	for idx := range uint64(1000) { // tasks of one job
		cm := cancelMsg{Inst: inst, Job: jobs, Idx: idx}
		if err := nc.Publish(cancelPrefix+c.opts.Pool, cm.appendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	syncCancel(t, nc, s)
	l := &s.local.cancelled
	s.local.mu.Lock()
	defer s.local.mu.Unlock()
	if l.n > cancelLedgerMax || len(l.jobs) > cancelLedgerMax || len(l.order)-l.head != len(l.jobs) || cap(l.order) > 4*cancelLedgerMax {
		t.Errorf("the ledger holds %d entries, %d jobs, %d in order (capacity %d): more than %d", l.n, len(l.jobs), len(l.order)-l.head, cap(l.order), cancelLedgerMax)
	}
	if !l.has(jobKey{inst, jobs}, 999) || !l.has(jobKey{inst, jobs - 2}, 5) || !l.has(jobKey{inst, jobs - 1}, jobs-1) {
		t.Error("the newest cancellations were pushed out")
	}
}

// A message that a peer sends to a worker slot's inbox (which the slot's
// requests for tasks show to anyone listening on the JetStream API) is no
// delivery of the tasks' consumer: the worker does not run it, nor answer
// it (its answers, and progress reports, would go to the reply subject
// the peer chose, such as a stream's).
func TestWorkerTakesOnlyDeliveries(t *testing.T) {
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	nc := peerConn(t, c)
	results := listen(t, nc, directPrefix+"peer")
	pulls := listen(t, nc, "$JS.API.CONSUMER.MSG.NEXT."+taskStream+".>")
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 1) // the slot asks for its next task
	var inbox string
	select {
	case m := <-pulls:
		inbox = m.Reply
	case <-time.After(10 * time.Second):
		t.Fatal("no request for a task seen in 10 s")
	}
	h := taskMsg{Target: double.Name(), Inst: "peer", Job: 1}
	// (The server refuses a client's message with a reply of $JS.ACK.)
	forged := &nats.Msg{Subject: inbox, Reply: "peer.reply", Data: append(h.appendHead(nil), encoded(t, 21)...)}
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	// The slot reads its inbox in order: the forged message before the
	// next task.
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 2)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-results:
		t.Error("the worker ran a task sent to its inbox by a peer")
	default:
	}
}

// sleepyCall calls sleepy with id and ms in the background; its error
// comes on the channel.
func sleepyCall(ctx context.Context, pool *mp.Pool, id, ms int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := sleepy.Apply(ctx, pool, [2]int{id, ms})
		done <- err
	}()
	return done
}

// Messages that the client library takes for a status of the pool's
// consumer of results, and then ends its reading of results for good (409
// Consumer Deleted, 400 Bad Request, a count of pending messages that
// does not parse): a peer can store such a message (no data, a Status
// header) in the stream of results, where it stays, or send one to the
// inbox of the pool's requests for results, which shows on the JetStream
// API's subjects. The pool reads its results all the same: a result
// through the stream settles its call.
func TestResultsSurviveForgedStatus(t *testing.T) {
	var logs lockedBuffer
	c := startCluster(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	nc := peerConn(t, c)
	// Listening before the pool opens: its first request for results,
	// which its reading may keep to the end of the test, is seen too.
	pulls := listen(t, nc, "$JS.API.CONSUMER.MSG.NEXT."+resultStream+".>")
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	send := resultSender{t, nc, peerJS(t, nc), s}
	forged := []nats.Header{
		{"Status": {"409"}, "Description": {"Consumer Deleted"}},
		{"Status": {"400"}, "Description": {"Bad Request"}},
		{"Status": {"408"}, "Description": {"Request Timeout"}, "Nats-Pending-Messages": {"x"}},
	}
	calls := queueCalls(t, c, pool, len(forged)+2)
	settle := func(i int) {
		t.Helper()
		r := resultMsg{Job: uint64(i + 1), Kind: resOK, Payload: encoded(t, 100+i)}
		send.stream(r.appendTo(nil))
		if v, err := calls[i].await(t); v != 100+i || err != nil {
			t.Fatalf("call %d: got %v, %v", i+1, v, err)
		}
	}
	// Stored in the stream, each before a result.
	for i, h := range forged {
		if _, err := send.js.PublishMsg(testCtx(t, 10*time.Second), &nats.Msg{Subject: resPrefix + s.inst, Header: h}); err != nil {
			t.Fatal(err)
		}
		settle(i)
	}
	// Sent to the inbox of the pool's requests for results on its
	// current consumer (the one of the stream's consumers left on the
	// pool's subject: each new reading deletes the one before). Such a
	// request was sent before the last result came (the forged statuses
	// stored may or may not have ended the readings before), but this
	// listener may see it later.
	ctx := testCtx(t, 10*time.Second)
	rs, err := send.js.Stream(ctx, resultStream)
	if err != nil {
		t.Fatal(err)
	}
	var current string
	for ci := range rs.ListConsumers(ctx).Info() {
		if ci.Config.FilterSubject == resPrefix+s.inst {
			current = ci.Name
		}
	}
	if current == "" {
		t.Fatal("the pool has no consumer of results")
	}
	var inbox string
	for inbox == "" {
		select {
		case m := <-pulls:
			if strings.HasSuffix(m.Subject, "."+current) {
				inbox = m.Reply
			}
		case <-ctx.Done():
			t.Fatalf("no request for results on the pool's consumer %s seen", current)
		}
	}
	if err := nc.PublishMsg(&nats.Msg{Subject: inbox, Header: forged[0]}); err != nil {
		t.Fatal(err)
	}
	settle(len(forged))
	settle(len(forged) + 1)
	// Once per forged status at most (a status stored just after another
	// may be deleted before it is read), not for ever: a status stored is
	// deleted, not read again by each new reading.
	if n := strings.Count(logs.String(), "results ended"); n > len(forged)+1 {
		t.Errorf("the pool's reading of its results ended %d times for %d forged statuses", n, len(forged)+1)
	}
}

// A task stored by a peer that looks like a status of the consumer (no
// data, a Status header) is a delivery all the same (it has a reply
// subject, which the server's statuses have not): the worker drops it as
// malformed rather than take it for the end of its request, which left
// it in the stream, given again after each ack wait.
func TestTaskLooksLikeStatus(t *testing.T) {
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	js := peerJS(t, nc)
	for _, h := range []nats.Header{
		{"Status": {"409"}, "Description": {"Consumer Deleted"}},
		{"Status": {"408"}, "Description": {"Request Timeout"}},
		{"Status": {"100"}, "Description": {"Idle Heartbeat"}},
	} {
		m := &nats.Msg{Subject: instSubject(c.opts.Pool, s.fp, "peer") + "1.0", Header: h}
		if _, err := js.PublishMsg(testCtx(t, 10*time.Second), m); err != nil {
			t.Fatal(err)
		}
		awaitStreamMsgs(t, c, 0)
	}
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 3)
}

// Headers of a peer's results sent directly, with odd values: an
// acknowledgement subject that is a wildcard, has a space, is long, or
// names another consumer's delivery is not published to (the answer says
// so); a worker id that is empty or longer than maxWorkerID does not
// become the warm worker. The pool answers each, and serves on.
func TestPeerHeaders(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	own := taskAckPrefix(c.opts.Pool, s.fp)
	r := resultMsg{Job: 1 << 60, Kind: resOK}
	for _, h := range []nats.Header{
		{ackToHeader: {own + "*"}}, {ackToHeader: {own + ">"}}, {ackToHeader: {own + "1 2"}},
		{ackToHeader: {own + strings.Repeat("1.", 50000)}}, {ackToHeader: {own[:len(own)-1]}},
		{ackToHeader: {own + "1.1.1.0.0", "second"}},
		{workerHeader: {""}}, {workerHeader: {strings.Repeat("w", maxWorkerID+1)}}, {workerHeader: {strings.Repeat("w", 1<<19)}},
		{"Status": {"503"}}, {"Nats-Msg-Id": {"x"}},
	} {
		reply, err := nc.RequestMsg(&nats.Msg{Subject: directPrefix + s.inst, Data: r.appendTo(nil), Header: h}, 10*time.Second)
		if err != nil {
			t.Fatalf("headers %.60v: %v (the pool's connection is %v)", h, err, c.conn.nc.Status())
		}
		if bytes.Equal(reply.Data, answerAcked) && !strings.HasSuffix(h.Get(ackToHeader), "1.1.1.0.0") {
			t.Errorf("headers %.60v: the pool acknowledged", h)
		}
	}
	if w := s.warm.current(); w != "" {
		t.Errorf("the warm worker is %.20q after a peer's results", w)
	}
	startWorker(t, c, "1")
	awaitWorkers(t, c, 1)
	applyDoubles(t, testCtx(t, 30*time.Second), pool, 3)
}

// An attempt at purges ends at its first failure (the server does not
// answer, most likely): the purges left wait for the next attempt rather
// than each for its timeout, which closing the Cluster would wait for.
func TestPurgeAttemptEndsAtFirstFailure(t *testing.T) {
	var purges atomic.Int32
	testHookPurge = func(string) error {
		purges.Add(1)
		return errors.New("test: the purge is lost")
	}
	t.Cleanup(func() { testHookPurge = nil })
	c := startCluster(t, Options{})
	var reqs []purgeReq
	for job := range uint64(3) {
		reqs = append(reqs, purgeReq{subject: jobSubject(c.opts.Pool, "fp", "inst", job+1) + ".>",
			barrier: jobSubject(c.opts.Pool, "fp", "inst", 0) + ".0", pool: c.opts.Pool})
	}
	if failed := c.purges.try(reqs); len(failed) != 3 {
		t.Errorf("%d purges failed, want 3", len(failed))
	}
	if n := purges.Load(); n != 1 {
		t.Errorf("%d purges tried, want 1 (the first failed)", n)
	}
}

// A cancellation that the pool did not send (a peer's, naming the pool's
// instance and job): the worker stops the task running, or skips the
// task it takes after, as for the pool's own; the pool, which still waits
// for the task, fails it with ErrCancelledByPeer instead of waiting for
// ever (the worker acknowledged the task, which no worker runs again).
func TestPeerCancelFailsCall(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envDir, dir) // for the pool's local worker processes
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	ctx := testCtx(t, 60*time.Second)
	running := sleepyCall(ctx, pool, 7, 60000) // job 1
	awaitStarts(t, dir, 1)
	cm := cancelMsg{Inst: s.inst, Job: 1, All: true}
	if err := nc.Publish(cancelPrefix+c.opts.Pool, cm.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	// Heard before the next call's task is taken.
	cm = cancelMsg{Inst: s.inst, Job: 2, Idx: 0}
	peerCancel(t, nc, s, cm.appendTo(nil))
	skipped := sleepyCall(ctx, pool, 8, 0) // job 2
	for what, done := range map[string]<-chan error{"running": running, "taken after": skipped} {
		select {
		case err := <-done:
			if !errors.Is(err, ErrCancelledByPeer) {
				t.Errorf("the call %s: got %v, want ErrCancelledByPeer", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the call %s: no result 10 s after a peer's cancellation", what)
		}
	}
	if n := count(records(t, dir), "start_8_"); n != 0 {
		t.Errorf("the task taken after the cancellation ran %d times", n)
	}
	applyDoubles(t, ctx, pool, 3)
}

//go:build linux

package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mplog"
	"github.com/go-mp/mp/internal/natsnode"
	"github.com/go-mp/mp/manager"
)

// WorkerOptions configure a worker (see RunWorker).
type WorkerOptions struct {
	// URL is the cluster's address (Cluster.URL), several separated by
	// commas.
	URL string
	// Creds, Token and TLS authenticate and secure the connection, as in
	// Options.
	Creds string
	Token string
	TLS   *tls.Config
	// Pool is the name of the queue of tasks to serve (Options.Pool); ""
	// is "default".
	Pool string
	// Local configures the local pool that runs the tasks: Processes is
	// the number of tasks run at a time (0: runtime.GOMAXPROCS(0));
	// MaxTasksPerChild, MaxMemory, CancelGrace, Initializer and
	// Finalizer apply as in a local pool, and TaskTimeout to the tasks
	// whose pool gave none. Its Cluster is ignored.
	Local mp.PoolOptions
	// Logger receives the worker's warnings; nil means mp's logger.
	Logger *slog.Logger
}

// The environment that makes mp.Main run a worker (see the package doc).
const (
	// EnvCluster is the cluster's URL.
	EnvCluster = "MP_CLUSTER"
	// EnvPool is the pool name (WorkerOptions.Pool).
	EnvPool = "MP_CLUSTER_POOL"
	// EnvProcesses is the number of local worker processes.
	EnvProcesses = "MP_CLUSTER_PROCESSES"
	// EnvCreds is a NATS credentials file.
	EnvCreds = "MP_CLUSTER_CREDS"
)

func init() { clusterhook.Main = workerMain }

// workerMain runs a worker and exits if the environment asks for one.
// The variables are removed first: the worker's own children are no
// workers.
func workerMain() {
	if os.Getenv(EnvCluster) == "" {
		return
	}
	o, err := workerOptionsFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mp cluster worker:", err)
		os.Exit(2)
	}
	for _, e := range []string{EnvCluster, EnvPool, EnvProcesses, EnvCreds} {
		os.Unsetenv(e)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = RunWorker(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mp cluster worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workerOptionsFromEnv reads a worker's options from the environment.
// MP_AUTHKEY is read as mp manager and `mp cluster serve` read it
// (manager.AuthkeyFromEnv: "hex:..." is hexadecimal), and gives the
// token derived from it (natsnode.TokenFromAuthkey), unless the URL
// carries its own credentials, which the client would use instead.
func workerOptionsFromEnv() (WorkerOptions, error) {
	o := WorkerOptions{URL: os.Getenv(EnvCluster), Pool: os.Getenv(EnvPool), Creds: os.Getenv(EnvCreds)}
	if n := os.Getenv(EnvProcesses); n != "" {
		v, err := strconv.Atoi(n)
		if err != nil || v < 0 {
			return o, fmt.Errorf("bad %s=%q", EnvProcesses, n)
		}
		o.Local.Processes = v
	}
	if urlHasUser(o.URL) {
		return o, nil
	}
	key, err := manager.AuthkeyFromEnv()
	if err != nil {
		return o, err
	}
	if key != nil {
		o.Token = natsnode.TokenFromAuthkey(key)
	}
	return o, nil
}

// urlHasUser reports whether one of the comma-separated NATS URLs
// carries a user or a token (nats://TOKEN@host:port).
func urlHasUser(urls string) bool {
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// RunWorker serves the cluster's tasks of opts.Pool until ctx ends, then
// stops: the tasks it runs are cancelled and go back to the queue for
// other workers. It takes tasks only for the targets this program
// registered, with the same types (see the package doc), and only as many
// as its local pool has free workers.
func RunWorker(ctx context.Context, opts WorkerOptions) error {
	if opts.Pool == "" {
		opts.Pool = "default"
	}
	if !nameRE.MatchString(opts.Pool) {
		return fmt.Errorf("cluster: bad pool name %q", opts.Pool)
	}
	cn, err := dial(ctx, connOptions{URL: opts.URL, Creds: opts.Creds, Token: opts.Token, TLS: opts.TLS, Name: "mp worker"})
	if err != nil {
		return err
	}
	defer cn.close()
	local := opts.Local
	n, err := startNode(cn, nodeOptions{pool: opts.Pool, log: mplog.Or(opts.Logger),
		newLocal: func() (clusterhook.Local, error) { return clusterhook.NewLocal(local) }})
	if err != nil {
		return err
	}
	<-ctx.Done()
	n.shutdown()
	return nil
}

type nodeOptions struct {
	pool     string
	newLocal func() (clusterhook.Local, error)
	log      *slog.Logger
}

// node is a worker: it takes tasks from the stream for its free slots
// and runs them in its local pool.
type node struct {
	cn    *conn
	o     nodeOptions
	id    string
	fp    string
	slots int
	local clusterhook.Local
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	sub   *nats.Subscription
	// replies has the pools' answers to the results sent directly.
	replies *replyMux

	lookup   sync.Mutex // held by the slot looking the consumer up
	mu       sync.Mutex
	cons     jetstream.Consumer
	ackWait  time.Duration
	attempts int
	// newAckWait wakes progress when the ack wait is set: it paused a
	// second when it did not know it, and that is longer than an ack
	// wait shorter than a second.
	newAckWait chan struct{}
	reqs       pullRequests              // for the consumer's priority policy
	running    map[jobKey][]*runningTask // a task given twice at a time is there twice
	cancelled  cancelLedger              // so that tasks taken after their cancellation are skipped
}

type jobKey struct {
	inst string
	job  uint64
}

// heartbeatEvery is how often a worker tells the pools it is there.
const heartbeatEvery = time.Second

func startNode(cn *conn, o nodeOptions) (*node, error) {
	local, err := o.newLocal()
	if err != nil {
		return nil, fmt.Errorf("cluster: start the worker's local pool: %w", err)
	}
	n := &node{cn: cn, o: o, id: nuid.Next(), fp: clusterhook.Fingerprint(), slots: local.Slots(), local: local,
		running: map[jobKey][]*runningTask{}, newAckWait: make(chan struct{}, 1)}
	n.ctx, n.stop = context.WithCancel(context.Background())
	n.sub, err = cn.nc.Subscribe(cancelPrefix+o.pool, n.onCancel)
	if err == nil {
		n.replies, err = newReplyMux(cn.nc)
		if err != nil {
			n.sub.Unsubscribe()
		}
	}
	if err != nil {
		local.Terminate()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.wg.Add(2 + n.slots)
	go n.heartbeats()
	go n.progress()
	for range n.slots {
		go n.slot()
	}
	return n, nil
}

// shutdown stops taking tasks, cancels those running (they go back to the
// queue) and waits for the node's goroutines.
func (n *node) shutdown() {
	n.stop()
	n.wg.Wait()
	n.sub.Unsubscribe()
	n.replies.sub.Unsubscribe()
	n.local.Terminate()
}

func (n *node) heartbeats() {
	defer n.wg.Done()
	hb := heartbeat{ID: n.id, Slots: uint64(n.slots)}
	msg := hb.appendTo(nil)
	subj := hbPrefix + n.o.pool + "." + n.fp
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for beat := 1; ; beat++ {
		n.cn.nc.Publish(subj, msg)
		select {
		case <-t.C:
		case <-n.ctx.Done():
			return
		}
		if beat%10 == 0 {
			n.refreshConsumer()
		}
	}
}

// consumer returns the tasks' consumer, looking it up (a pool makes it)
// until it exists or the node stops.
func (n *node) consumer() (jetstream.Consumer, bool) {
	n.mu.Lock()
	c := n.cons
	n.mu.Unlock()
	if c != nil {
		return c, true
	}
	// One slot looks, the others wait for it: no pool of this build may
	// be open for long, and the server should not hear from every slot.
	n.lookup.Lock()
	defer n.lookup.Unlock()
	n.mu.Lock()
	c = n.cons
	n.mu.Unlock()
	for c == nil {
		ctx, cancel := context.WithTimeout(n.ctx, requestTimeout)
		got, err := n.cn.js.Consumer(ctx, taskStream, taskDurable(n.o.pool, n.fp))
		cancel()
		if err == nil {
			n.mu.Lock()
			n.cons, c = got, got
			n.setConfig(got.CachedInfo().Config)
			n.mu.Unlock()
			break
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-n.ctx.Done():
			return nil, false
		}
	}
	return c, true
}

// refreshConsumer reads the consumer's settings again: a pool that opens
// may change its ack wait and attempts.
func (n *node) refreshConsumer() {
	n.mu.Lock()
	c := n.cons
	n.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, requestTimeout)
	info, err := c.Info(ctx)
	cancel()
	if err == nil {
		n.mu.Lock()
		n.setConfig(info.Config)
		n.mu.Unlock()
	}
}

// setConfig takes the settings of the tasks' consumer. Called with n.mu
// held.
func (n *node) setConfig(cfg jetstream.ConsumerConfig) {
	if cfg.AckWait != n.ackWait {
		select {
		case n.newAckWait <- struct{}{}:
		default: // progress has one to take already
		}
	}
	n.ackWait, n.attempts = cfg.AckWait, attemptsOf(cfg.MaxDeliver)
	n.reqs = newPullRequests(cfg.PriorityPolicy == jetstream.PriorityPolicyPrioritized)
}

// forgetConsumer drops the consumer after an error, for consumer to look
// it up again (a pool may have changed it).
func (n *node) forgetConsumer() {
	n.mu.Lock()
	n.cons = nil
	n.mu.Unlock()
}

// pullExpires is how long a worker's request for a task waits at the
// server before it expires and is made again.
const pullExpires = 5 * time.Second

// slot takes one task at a time and runs it: a task is pulled only when
// a slot is free, as the ack wait runs from delivery. It pulls with a
// request of its own, on an inbox it keeps: one message a task, where
// the client library's Fetch subscribes and unsubscribes each time. Its
// request is warm once its last task named this worker (see warmth).
func (n *node) slot() {
	defer n.wg.Done()
	inbox := n.cn.nc.NewInbox()
	sub, err := n.cn.nc.SubscribeSync(inbox)
	if err != nil {
		n.o.log.Warn("mp cluster: worker slot", "err", err)
		return
	}
	defer sub.Unsubscribe()
	next := "$JS.API.CONSUMER.MSG.NEXT." + taskStream + "." + taskDurable(n.o.pool, n.fp)
	delivery := taskAckPrefix(n.o.pool, n.fp)
	warm := false // the last task named this worker
	pull := func() bool {
		n.mu.Lock()
		req := n.reqs.cold
		if warm {
			req = n.reqs.warm
		}
		n.mu.Unlock()
		return n.cn.nc.PublishRequest(next, inbox, req) == nil
	}
	pulled := false // by run, for the next task
	for n.ctx.Err() == nil {
		if !pulled {
			if _, ok := n.consumer(); !ok {
				return
			}
			if !pull() {
				n.pause()
				continue
			}
		}
		m := n.awaitTask(sub)
		if pulled = false; m == nil {
			continue
		}
		if !strings.HasPrefix(m.Reply, delivery) {
			// No delivery of the consumer: a peer's message to the
			// inbox (which the requests show). The request still waits.
			pulled = true
			continue
		}
		warm = m.Header.Get(workerHeader) == n.id
		if h := testHookDropTask; h != nil && h() {
			continue // as the client library drops a message
		}
		pulled = n.run(m, pull)
		if h := testHookRan; h != nil {
			h()
		}
	}
}

// awaitTask waits for the answer to a pull request: a task, or nil when
// the request expired, failed or the node stops.
func (n *node) awaitTask(sub *nats.Subscription) *nats.Msg {
	for {
		ctx, cancel := context.WithTimeout(n.ctx, pullExpires+time.Second)
		m, err := sub.NextMsgWithContext(ctx)
		cancel()
		if err != nil {
			return nil // expired without a word (a new request follows), or stopping
		}
		if m.Reply != "" {
			// A delivery, whatever its headers: the server's statuses
			// have no reply subject, and a peer may store a task that
			// looks like one (the slot ignores a message that is no
			// delivery of its consumer).
			return m
		}
		switch status := m.Header.Get("Status"); status {
		case "":
			return m
		case "100":
			continue // a heartbeat: the request still waits
		case "408", "404":
			return nil // expired
		default:
			// The consumer went away, or changed leader: look it up again.
			n.forgetConsumer()
			n.pause()
			return nil
		}
	}
}

// pause waits a little before trying again, or until the node stops.
func (n *node) pause() {
	select {
	case <-time.After(200 * time.Millisecond):
	case <-n.ctx.Done():
	}
}

// Answers to a task's delivery, published to its reply subject (so that
// a result published after its slot is gone is still acknowledged).
var (
	ackOK       = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

func (n *node) answer(m *nats.Msg, what []byte) { n.cn.nc.Publish(m.Reply, what) }

// run runs one task and publishes its outcome, then acknowledges it.
// pull asks for the slot's next task; run reports whether it did.
func (n *node) run(m *nats.Msg, pull func() bool) (pulled bool) {
	var t taskMsg
	if t.parse(m.Data) != nil {
		n.o.log.Warn("mp cluster: malformed task dropped", "subject", m.Subject)
		n.answer(m, ackTerm)
		return false
	}
	key := jobKey{t.Inst, t.Job}
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	cancelled := resultMsg{Job: t.Job, Index: t.Index, Kind: resCancelled}
	rt := &runningTask{idx: t.Index, cancel: cancel, reply: m.Reply}
	if !n.track(key, rt) {
		// Cancelled: it never runs. The pool that cancelled it drops the
		// result, which it needs if the cancellation was not its own.
		n.deliverResult(m, resPrefix+t.Inst, cancelled.appendTo(nil), nil, nil)
		return false
	}
	defer n.untrack(key, rt)
	md, _ := m.Metadata()
	n.mu.Lock()
	attempts := n.attempts
	n.mu.Unlock()
	if md != nil && attempts > 0 && int(md.NumDelivered) > attempts {
		// Its workers died on each of its attempts: this delivery, one
		// past them, only says so.
		if testHookLastDelivery != nil {
			testHookLastDelivery()
		}
		r := resultMsg{Job: t.Job, Index: t.Index, Kind: resLost,
			Payload: fmt.Appendf(nil, "%v: the task's worker was lost on each of its %d attempts", mp.ErrWorkerLost, attempts)}
		n.deliverResult(m, resPrefix+t.Inst, r.appendTo(nil), nil, nil)
		return false
	}
	// The outcome is settled, and a result published, on the goroutine
	// that receives it from the local pool: the result goes out at once.
	type outcome struct {
		answer []byte // the delivery's answer when no result is published
		body   []byte // the result message published
		ack    jetstream.PubAckFuture
		direct *directReply // the pool's answer to the result sent directly
		pulled bool         // the slot's next task asked for
	}
	out := make(chan outcome, 1)
	id := t.Inst + "-" + strconv.FormatUint(t.Job, 10) + "." + strconv.FormatUint(t.Index, 10)
	n.local.Run(ctx, &clusterhook.Task{Target: t.Target, Chunk: t.Chunk, Arg: t.Arg, Timeout: time.Duration(t.Timeout), ID: id,
		Finish: func(b []byte, err error) {
			r := resultMsg{Job: t.Job, Index: t.Index, Kind: resOK, Payload: b}
			if err != nil {
				kind, payload, retry := n.classify(ctx, err, md, attempts)
				switch {
				case retry:
					out <- outcome{answer: ackNak}
					return
				case kind < 0:
					// Cancelled, by its pool (which drops the result) or
					// by a cancellation that was not the pool's.
					out <- outcome{body: cancelled.appendTo(nil)}
					return
				}
				r.Kind, r.Payload = byte(kind), payload
			}
			// b lives only until Finish returns: the message copies it.
			o := outcome{body: r.appendTo(nil)}
			if len(o.body) > directMax {
				o.ack, _ = n.cn.js.PublishAsync(resPrefix+t.Inst, o.body)
				out <- o
				return
			}
			// Sent here, on the goroutine that has the result, rather
			// than by a goroutine of its own, and the slot's next
			// request for a task right after it, from here too: the
			// server routes the result first, and has the request
			// before the pool's next task comes, which the slot's
			// goroutine, woken after, sent too late for one call in ten
			// to twenty (cluster_apply_sync): the call then went to a
			// worker that is not warm (see warmth).
			o.direct = n.replies.expect()
			n.sendDirect(t.Inst, o.body, m.Reply, o.direct)
			o.pulled = pull()
			out <- o
		}})
	o := <-out
	if o.answer != nil {
		n.answer(m, o.answer)
		return false
	}
	n.deliverResult(m, resPrefix+t.Inst, o.body, o.ack, o.direct)
	return o.pulled
}

// directWait is how long a worker waits at most for its pool to say it
// took a result sent directly, before it stores the result in the
// stream: a quarter of the ack wait if that is less, so that the task is
// acknowledged before the stream gives it to another worker.
const directWait = 2 * time.Second

// sendDirect sends a result to its pool over core NATS, with d's reply
// subject, the subject that acknowledges the task's delivery
// (ackSubject) and this worker's id (see warmth): the pool acknowledges
// the task and answers as it takes the result (or had one for that
// task). A result that cannot be sent at once gets no answer: it goes to
// the stream after the wait (see deliverResult).
func (n *node) sendDirect(inst string, body []byte, ackSubject string, d *directReply) {
	n.cn.nc.PublishMsg(&nats.Msg{Subject: directPrefix + inst, Reply: d.subject, Data: body,
		Header: nats.Header{ackToHeader: []string{ackSubject}, workerHeader: []string{n.id}}})
}

// awaitDirect reports whether the pool answered that it took the result
// sent with d, within directWait (or a quarter of the ack wait, if less),
// and whether it acknowledged the task. Another answer ends the wait at
// once: the result goes to the stream (see directMax).
func (n *node) awaitDirect(d *directReply) (took, acked bool) {
	defer n.replies.forget(d)
	wait := directWait
	n.mu.Lock()
	if n.ackWait > 0 {
		wait = min(wait, n.ackWait/4)
	}
	n.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.answered:
		return d.took, d.acked
	case <-t.C:
	case <-n.ctx.Done():
	}
	return false, false
}

// replyMux receives the pools' answers to the results sent directly, on
// one subscription to the node's inbox (as the client library's requests
// do), so that a result is published by the goroutine that has it rather
// than by a request's goroutine of its own.
type replyMux struct {
	prefix string // the inbox and a dot; a token follows
	sub    *nats.Subscription

	mu      sync.Mutex
	next    uint64
	waiting map[string]*directReply
}

// directReply is a result sent directly, waiting for its pool's answer.
type directReply struct {
	token    string
	subject  string        // the reply subject of the result
	answered chan struct{} // closed by the answer
	// What the answer said, set before answered closes: the pool took
	// the result, and acknowledged the task.
	took, acked bool
}

func newReplyMux(nc *nats.Conn) (*replyMux, error) {
	r := &replyMux{prefix: nc.NewInbox() + ".", waiting: map[string]*directReply{}}
	var err error
	r.sub, err = nc.Subscribe(r.prefix+"*", r.onAnswer)
	return r, err
}

// expect makes the reply subject of a result to send.
func (r *replyMux) expect() *directReply {
	r.mu.Lock()
	r.next++
	d := &directReply{token: strconv.FormatUint(r.next, 36), answered: make(chan struct{})}
	r.waiting[d.token] = d
	r.mu.Unlock()
	d.subject = r.prefix + d.token
	return d
}

// forget drops d, answered or not: a late answer is ignored.
func (r *replyMux) forget(d *directReply) {
	r.mu.Lock()
	delete(r.waiting, d.token)
	r.mu.Unlock()
}

func (r *replyMux) onAnswer(m *nats.Msg) {
	token := m.Subject[len(r.prefix):]
	r.mu.Lock()
	d := r.waiting[token]
	delete(r.waiting, token)
	r.mu.Unlock()
	if d != nil {
		// Only the pool's answers say it took the result. Another message
		// is the server's status that nothing listens on the result's
		// subject ("503 no responders": the pool is away from the server,
		// reconnecting after the loss of its node), or a peer's: taken
		// for a pool's answer, it had the worker acknowledge a task whose
		// result no one had, and the pool's call waited for ever. The
		// result goes to the stream at once.
		d.acked = bytes.Equal(m.Data, answerAcked)
		d.took = d.acked || bytes.Equal(m.Data, answerTook)
		close(d.answered)
	}
}

// deliverResult acknowledges the delivery m once its pool has its
// result body: the pool said it took it (direct, see sendDirect), or the
// stream has it, published already (ack) or not yet (ack nil), which is
// where a result the pool did not answer for goes. The slot is free
// meanwhile: its next pull goes out while the result is delivered.
func (n *node) deliverResult(m *nats.Msg, subject string, body []byte, ack jetstream.PubAckFuture, direct *directReply) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if direct != nil {
			took, acked := n.awaitDirect(direct)
			if took {
				if h := testHookWorkerAck; !acked && (h == nil || h()) {
					n.answer(m, ackOK)
				}
				return
			}
		}
		if !n.resultStored(ack) && !n.publishResult(subject, body) {
			n.answer(m, ackNak) // stopping: another worker runs it
			return
		}
		n.answer(m, ackOK)
	}()
}

// testHookWorkerAck, if a test sets it, says whether a worker whose
// pool answered for its result acknowledges the task.
var testHookWorkerAck func() bool

// testHookProgressPause, if a test sets it, is told each pause of a
// worker's progress reports before it starts.
var testHookProgressPause func(time.Duration)

// testHookRan, if a test sets it, runs in a worker slot after each task.
var testHookRan func()

// testHookDropTask, if a test sets it, drops the deliveries for which it
// returns true.
var testHookDropTask func() bool

// testHookLastDelivery, if a test sets it, runs when a worker takes a
// task out of attempts, before it fails the task.
var testHookLastDelivery func()

// attemptsOf returns the attempts a task has, from its consumer's
// MaxDeliver: one more delivery than attempts (see openSession); 0 for
// no limit.
func attemptsOf(maxDeliver int) int { return max(maxDeliver-1, 0) }

// resultStored reports whether the stream acknowledged a result
// published asynchronously (a nil ack: the publish failed at once).
func (n *node) resultStored(ack jetstream.PubAckFuture) bool {
	if ack == nil {
		return false
	}
	select {
	case <-ack.Ok():
		return true
	case <-ack.Err():
		return false
	case <-n.ctx.Done():
		return false
	}
}

// classify maps a failed task's error to the result the pool gets, as a
// local pool gives it; retry says the task goes back to the queue (its
// worker process died, and attempts are left, or this worker stops), and
// kind -1 that a cancellation stopped it (its pool's, or a peer's: see
// resCancelled).
func (n *node) classify(ctx context.Context, err error, md *nats.MsgMetadata, attempts int) (kind int, payload []byte, retry bool) {
	var re *mp.RemoteError
	switch {
	case n.ctx.Err() != nil, errors.Is(err, mp.ErrPoolTerminated), errors.Is(err, mp.ErrPoolClosed):
		return 0, nil, true
	case ctx.Err() != nil:
		return -1, nil, false
	case errors.As(err, &re):
	case errors.Is(err, mp.ErrTaskTimeout):
		return resTimeout, []byte(err.Error()), false
	case errors.Is(err, mp.ErrWorkerLost):
		if md == nil {
			return 0, nil, true // the stream counts the attempts
		}
		if attempts <= 0 || int(md.NumDelivered) < attempts {
			return 0, nil, true
		}
		return resLost, []byte(fmt.Sprintf("%v (attempt %d of %d)", err, md.NumDelivered, attempts)), false
	default:
		re = mp.NewRemoteError(err)
	}
	b, merr := codec.Marshal(re)
	if merr != nil {
		b, _ = codec.Marshal(mp.NewRemoteError(errors.New(err.Error())))
	}
	return resError, b, false
}

// publishResult publishes a result to its pool's stream, trying again
// until the stream has it or the node stops.
func (n *node) publishResult(subject string, body []byte) bool {
	for {
		ctx, cancel := context.WithTimeout(n.ctx, publishTimeout)
		_, err := n.cn.js.Publish(ctx, subject, body)
		cancel()
		if err == nil {
			return true
		}
		if n.ctx.Err() != nil {
			return false
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			// It will never fit: the task fails with that instead.
			body = tooLarge(body, n.cn.nc.MaxPayload())
			continue
		}
		n.o.log.Warn("mp cluster: publish a result", "err", err)
		select {
		case <-time.After(250 * time.Millisecond):
		case <-n.ctx.Done():
			return false
		}
	}
}

// runningTask is a task a slot runs.
type runningTask struct {
	idx    uint64 // in its job
	cancel context.CancelFunc
	reply  string // where its delivery is answered
}

// track records a running task of job k, unless its pool cancelled it.
// The same task may run twice at a time in one worker (given again after
// the ack wait while it runs, or a peer's copy of it): each is tracked,
// so that a cancellation stops both and each has its progress reported.
func (n *node) track(k jobKey, r *runningTask) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancelled.has(k, r.idx) {
		return false
	}
	n.running[k] = append(n.running[k], r)
	return true
}

// progress tells the stream, every third of the ack wait, that the
// running tasks are in progress, so that a long task is not given to
// another worker. Until the consumer is found the ack wait is not known:
// progress then looks every second, and starts again at once when it
// becomes known (a task taken meanwhile is reported within a third of
// the ack wait of its delivery, as any other).
func (n *node) progress() {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		every := n.ackWait / 3
		n.mu.Unlock()
		if every <= 0 {
			every = time.Second // not known before the consumer is found
		}
		every = max(every, 50*time.Millisecond)
		if h := testHookProgressPause; h != nil {
			h(every)
		}
		select {
		case <-time.After(every):
		case <-n.newAckWait:
			continue
		case <-n.ctx.Done():
			return
		}
		var replies []string
		n.mu.Lock()
		for _, rs := range n.running {
			for _, r := range rs {
				replies = append(replies, r.reply)
			}
		}
		n.mu.Unlock()
		for _, r := range replies {
			n.cn.nc.Publish(r, ackProgress)
		}
	}
}

func (n *node) untrack(k jobKey, r *runningTask) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := slices.DeleteFunc(n.running[k], func(o *runningTask) bool { return o == r })
	if len(rs) == 0 {
		delete(n.running, k)
	} else {
		n.running[k] = rs
	}
}

// onCancel stops the tasks a pool cancelled, and remembers them so that
// one taken later is skipped (see cancelLedger). A drop is remembered
// alike, and stops none: its running tasks run to their end.
func (n *node) onCancel(msg *nats.Msg) {
	var cm cancelMsg
	if cm.parse(msg.Data) != nil {
		return
	}
	k := jobKey{cm.Inst, cm.Job}
	n.mu.Lock()
	n.cancelled.add(k, cm.All, cm.Idx)
	if cm.Drop {
		n.mu.Unlock()
		return
	}
	var stop []context.CancelFunc
	for _, r := range n.running[k] {
		if cm.All || r.idx == cm.Idx {
			stop = append(stop, r.cancel)
		}
	}
	n.mu.Unlock()
	for _, cancel := range stop {
		cancel()
	}
}

// tooLarge replaces a result message too large for the server with the
// error that says so, which matches ErrTooLarge in the pool (registered:
// see ErrTooLarge).
func tooLarge(body []byte, limit int64) []byte {
	var r resultMsg
	if r.parse(body) != nil {
		return body // built by this worker: it parses
	}
	e := mp.NewRemoteError(fmt.Errorf("%w: the task's result of %d bytes exceeds it (%d bytes)", ErrTooLarge, len(body), limit))
	b, _ := codec.Marshal(e)
	r.Kind, r.Payload = resError, b
	return r.appendTo(nil)
}

//go:build linux

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
)

// session is one pool's side of the cluster: it publishes the pool's
// tasks, reads their results and settles each task once.
type session struct {
	c    *Cluster
	cfg  clusterhook.Config
	fp   string
	inst string // this pool's name among the cluster's: where its results go

	// resultsDone is closed once the pool reads no more results from
	// their stream (see readResults), through its consumer resultsName.
	resultsDone chan struct{}
	resultsName string
	subs        []*nats.Subscription
	acks        chan pending // publishes waiting for their ack, in order
	// unconfirmed are the tasks published without asking for an ack,
	// in order (see send).
	unconfirmed chan pending
	cancels     chan []stopReq
	local       *node // the workers of this process, if any
	warm        warmth
	// ackPrefix starts the subjects that acknowledge deliveries of the
	// tasks' consumer: the only ones onDirect publishes to.
	ackPrefix string
	stop      chan struct{}
	wg        sync.WaitGroup // the session's goroutines, but the teardown

	mu      sync.Mutex
	jobs    map[uint64]*job
	where   map[*clusterhook.Task]ref       // submitted and not settled
	cuts    map[*clusterhook.Task]*cutChunk // the chunks of where sent in parts
	nextJob uint64
	closing bool
	ended   bool
	peers   map[string]peer // workers heard from, by id
	since   time.Time       // since when no compatible worker was heard while tasks waited
	done    chan struct{}
}

// job is the tasks of one Submit: a Map's chunks, or one call.
type job struct {
	n       uint64
	tasks   []*clusterhook.Task
	settled []bool
	left    int             // tasks not settled
	pub     []atomic.Uint32 // each task's publication: see unsent
}

// A task's publication (job.pub), which tells a cancellation whether the
// task is out, and a publisher whether it may publish. A publisher
// (sendJob, and the retries of a publication) moves it with one
// compare-and-swap before publishing and one after, a cancellation
// (Cancel, Terminate) with one:
//
//	unsent  -> sending (publisher) -> sent (publisher)
//	unsent  -> cancelled  cancelled before its publication: never published
//	sending -> late       cancelled during it: its publisher stops it once
//	                      the publication is out (see endPublish)
//	sending -> lateDrop   dropped (DropAll) during it: its publisher drops
//	                      it once the publication is out
//	sent    -> sending    published again (confirmLoop, ackLoop)
//	sent    -> cancelled  cancelled once out: the canceller stops it
//	late    -> cancelled  (its publisher, which stops it)
//	lateDrop -> cancelled (its publisher, which drops it)
//
// so that no publication of a cancelled task goes out after the purge
// that was to remove it: no mutex per task on the path of publication.
const (
	unsent uint32 = iota
	sending
	sent
	late
	lateDrop
	cancelled
)

// startPublish claims r's task for a publication, its first (from
// unsent) or another (from sent); false if it was cancelled: it must not
// be published.
func (r ref) startPublish(from uint32) bool { return r.j.pub[r.idx].CompareAndSwap(from, sending) }

// endPublish ends the publication that startPublish claimed, once it is
// out (in the connection's buffer, which the server reads in order); if
// the task was cancelled (or dropped) meanwhile, it stops (or drops) the
// task itself (see stopTasks), now that the purge comes after the
// publication.
func (s *session) endPublish(r ref) {
	p := &r.j.pub[r.idx]
	if !p.CompareAndSwap(sending, sent) {
		drop := p.Swap(cancelled) == lateDrop
		s.stopTasks([]stopReq{{r: r, out: true, drop: drop}})
	}
}

// cancelPublish records the cancellation (or the drop) of r's task and
// reports whether its caller must stop (or drop) it (see stopTasks): the
// task is out, and no publication of it follows. A task not out is
// never published (from unsent), or stopped, or dropped, by its
// publisher (late, lateDrop).
func (r ref) cancelPublish(drop bool) (out bool) {
	p := &r.j.pub[r.idx]
	lateAs := late
	if drop {
		lateAs = lateDrop
	}
	for {
		switch p.Load() {
		case unsent:
			if p.CompareAndSwap(unsent, cancelled) {
				return false
			}
		case sending:
			if p.CompareAndSwap(sending, lateAs) {
				return false
			}
		case sent:
			if p.CompareAndSwap(sent, cancelled) {
				return true
			}
		default:
			return false // cancelled already
		}
	}
}

// ref is one task of a job.
type ref struct {
	j   *job
	idx int
}

// peer is a worker heard from.
type peer struct {
	fp    string
	slots int
	last  time.Time
}

// pending is a task published, waiting for its result or the stream's
// ack.
type pending struct {
	ack   jetstream.PubAckFuture
	r     ref
	msg   *nats.Msg
	first time.Time // of the first publication
}

// openSession opens a pool on c.
func openSession(c *Cluster, cfg clusterhook.Config) (*session, error) {
	s := &session{c: c, cfg: cfg, fp: clusterhook.Fingerprint(), inst: nuid.Next(),
		acks: make(chan pending, 4096), unconfirmed: make(chan pending, 4096), cancels: make(chan []stopReq, 1024), stop: make(chan struct{}),
		jobs: map[uint64]*job{}, where: map[*clusterhook.Task]ref{}, cuts: map[*clusterhook.Task]*cutChunk{},
		peers: map[string]peer{}, since: time.Now(), done: make(chan struct{})}
	s.ackPrefix = taskAckPrefix(c.opts.Pool, s.fp)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	js := c.conn.js
	o := c.opts
	// The consumer the workers share: made, or its settings brought up
	// to date, by each pool that opens.
	tc := jetstream.ConsumerConfig{
		Durable: taskDurable(o.Pool, s.fp), FilterSubject: taskFilter(o.Pool, s.fp),
		// One delivery past the attempts: a worker that gets it fails the
		// task with ErrWorkerLost through the stream of results (the
		// stream's advisory, which says the same, is not stored).
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: o.MaxAttempts + 1,
		MaxAckPending: o.MaxAckPending, MaxWaiting: 4096, Replicas: 0,
		// The warm worker's requests first (see warmth).
		PriorityGroups: []string{taskGroup}, PriorityPolicy: jetstream.PriorityPolicyPrioritized,
	}
	_, err := js.CreateOrUpdateConsumer(ctx, taskStream, tc)
	if err != nil {
		// A server without that policy (before 2.12): requests in turn.
		tc.PriorityGroups, tc.PriorityPolicy = nil, jetstream.PriorityPolicyNone
		_, err = js.CreateOrUpdateConsumer(ctx, taskStream, tc)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: create the tasks' consumer: %w", err)
	}
	nc := c.conn.nc
	sub := func(subject string, fn nats.MsgHandler) error {
		sb, err := nc.Subscribe(subject, fn)
		if err == nil {
			s.subs = append(s.subs, sb)
		}
		return err
	}
	// A task given MaxAttempts times without an answer: its workers died.
	adv := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + taskStream + "." + taskDurable(o.Pool, s.fp)
	err = errors.Join(sub(adv, s.onMaxDeliveries), sub(hbPrefix+o.Pool+".*", s.onHeartbeat), sub(directPrefix+s.inst, s.onDirect))
	if err == nil {
		err = nc.Flush()
	}
	var results jetstream.ConsumeContext
	s.resultsName = resultDurable(s.inst, 0)
	if err == nil {
		results, err = s.consumeResults()
	}
	if err != nil {
		s.unsubscribe()
		js.DeleteConsumer(ctx, resultStream, s.resultsName)
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if cfg.Processes > 0 {
		s.local, err = startNode(c.conn, nodeOptions{pool: o.Pool, newLocal: cfg.NewLocal, log: c.log})
		if err != nil {
			results.Stop()
			s.unsubscribe()
			js.DeleteConsumer(ctx, resultStream, s.resultsName)
			return nil, err
		}
	}
	s.resultsDone = make(chan struct{})
	go s.readResults(results)
	s.wg.Add(4)
	go s.confirmLoop()
	go s.ackLoop()
	go s.cancelLoop()
	go s.watch()
	return s, nil
}

func (s *session) unsubscribe() {
	for _, sb := range s.subs {
		sb.Unsubscribe()
	}
}

// Submit publishes ts as one job, but the tasks cancelled already (see
// Cancel): their callers have their error, and none of them runs.
func (s *session) Submit(ts []*clusterhook.Task) error {
	s.mu.Lock()
	if s.closing || s.ended {
		s.mu.Unlock()
		return mp.ErrPoolClosed
	}
	if slices.ContainsFunc(ts, func(t *clusterhook.Task) bool { return t.Canceled }) {
		ts = slices.DeleteFunc(slices.Clone(ts), func(t *clusterhook.Task) bool { return t.Canceled })
		if len(ts) == 0 {
			s.mu.Unlock()
			return nil // no job: one with no task would never end
		}
	}
	j := s.addJob(ts)
	s.mu.Unlock()
	s.sendJob(j, ts)
	return nil
}

// addJob registers ts as a job. Called with s.mu held. The job has its
// own copy of ts, whose tasks it forgets as they settle (see unlink),
// while sendJob reads ts.
func (s *session) addJob(ts []*clusterhook.Task) *job {
	s.nextJob++
	j := &job{n: s.nextJob, tasks: slices.Clone(ts), settled: make([]bool, len(ts)), left: len(ts),
		pub: make([]atomic.Uint32, len(ts))}
	s.jobs[j.n] = j
	for i, t := range ts {
		s.where[t] = ref{j, i}
	}
	if len(s.jobs) == 1 {
		s.since = time.Now()
	}
	return j
}

// sendJob publishes the tasks ts of j, but those cancelled meanwhile; a
// chunk too large for a message is cut in parts (see cut).
func (s *session) sendJob(j *job, ts []*clusterhook.Task) {
	subj := jobSubject(s.c.opts.Pool, s.fp, s.inst, j.n) + "."
	var buf bytes.Buffer
	for i, t := range ts {
		r := ref{j, i}
		if !r.startPublish(unsent) {
			continue // cancelled: never published
		}
		h := taskMsg{Chunk: t.Chunk, Timeout: int64(t.Timeout), Target: t.Target, Inst: s.inst, Job: j.n, Index: uint64(i)}
		buf.Reset()
		buf.Write(h.appendHead(nil))
		headLen := buf.Len()
		if t.Encode != nil {
			if err := t.Encode(&buf); err != nil {
				// The Map is over: nothing to send. (The task stays
				// claimed: nothing of it is published.)
				s.settle(r, nil, err)
				continue
			}
		} else {
			buf.Write(t.Arg)
		}
		if limit := s.c.conn.nc.MaxPayload(); int64(buf.Len()+taskMsgRoom) > limit {
			// Its parts are tasks of their own, in a job of their own:
			// the chunk stays claimed, nothing of it is published.
			s.cut(r, t, buf.Bytes()[headLen:], headLen, limit)
			continue
		}
		idx := strconv.Itoa(i)
		m := &nats.Msg{Subject: subj + idx, Data: bytes.Clone(buf.Bytes()), Header: nats.Header{}}
		// The stream drops a publish it has had within 2 minutes: a retry
		// after a lost ack, or a confirmation (see send), does not queue
		// the task twice.
		m.Header.Set(jetstream.MsgIDHeader, s.inst+"-"+strconv.FormatUint(j.n, 10)+"-"+idx)
		if w := s.warm.current(); w != "" {
			m.Header.Set(workerHeader, w)
		}
		if h := testHookBeforePublish; h != nil {
			h(j.n, i)
		}
		s.send(pending{r: r, msg: m, first: time.Now()})
		s.endPublish(r)
	}
}

// testHookBeforePublish, if a test sets it, runs before each publication
// of a task (the first, and those again: see republish), with its job's
// number and its index.
var testHookBeforePublish func(job uint64, idx int)

// confirmAfter is how long a task published without asking for the
// stream's ack may go without a result before it is published again,
// asking (see send).
const confirmAfter = 100 * time.Millisecond

// send publishes a task without asking the stream for an ack, when fewer
// than cap(s.unconfirmed) tasks wait for one: the stream's ack, sent to
// this process as the task is stored, competed for its CPU with the
// task's delivery to a worker (cluster_apply_sync: about 20-40 us of
// 300). The task's result confirms that the stream had it. A task with
// no result after confirmAfter (a long one, or one whose publication was
// lost) is published again by confirmLoop, asking for the ack, and from
// then on as publish says: the stream drops the copy it has already
// (the message id, within its duplicate window of 2 minutes), and stores
// a lost one. Beyond cap(s.unconfirmed) tasks, publish asks at once, and
// its limit of acks pending paces the publications. A task's message is
// kept for confirmAfter, settled or not.
//
// Nothing else needs the ack: the advisory of a task out of attempts
// finds the task by its subject (see onMaxDeliveries).
func (s *session) send(p pending) {
	select {
	case s.unconfirmed <- p:
	default:
		s.publish(p)
		return
	}
	if h := testHookDropPublish; h != nil && h() {
		return // as a publication lost on the way
	}
	err := s.c.conn.nc.PublishMsg(p.msg)
	if errors.Is(err, nats.ErrMaxPayload) {
		s.settle(p.r, nil, &TooLargeError{Size: len(p.msg.Data), Limit: s.c.conn.nc.MaxPayload()})
	}
	// Another error (the connection is down): confirmLoop publishes it
	// again.
}

// testHookDropPublish, if a test sets it, drops the publications
// without an ack for which it returns true.
var testHookDropPublish func() bool

// confirmLoop publishes again, asking for the stream's ack, the tasks
// sent without asking that have no result after confirmAfter.
func (s *session) confirmLoop() {
	defer s.wg.Done()
	t := time.NewTimer(confirmAfter)
	defer t.Stop()
	for {
		var p pending
		select {
		case p = <-s.unconfirmed:
		case <-s.stop:
			return
		}
		if d := time.Until(p.first.Add(confirmAfter)); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-s.stop:
				return
			}
		}
		s.republish(p)
	}
}

// republish publishes p again, asking for the stream's ack, unless its
// task is settled or cancelled. Its first publication may be under way
// still (send queues p before it publishes): republish waits for it.
func (s *session) republish(p pending) {
	for p.r.j.pub[p.r.idx].Load() == sending {
		select {
		case <-time.After(time.Millisecond):
		case <-s.stop:
			return
		}
	}
	s.mu.Lock()
	settled := p.r.j.settled[p.r.idx]
	s.mu.Unlock()
	if settled || !p.r.startPublish(sent) {
		return
	}
	if h := testHookBeforePublish; h != nil {
		h(p.r.j.n, p.r.idx)
	}
	s.publish(p)
	s.endPublish(p.r)
}

// publish publishes p.msg and hands its ack to ackLoop.
func (s *session) publish(p pending) {
	if p.first.IsZero() {
		p.first = time.Now()
	}
	ack, err := s.c.conn.js.PublishMsgAsync(p.msg)
	if errors.Is(err, nats.ErrMaxPayload) {
		err = &TooLargeError{Size: len(p.msg.Data), Limit: s.c.conn.nc.MaxPayload()}
	}
	if err != nil {
		s.settle(p.r, nil, fmt.Errorf("cluster: publish a task: %w", err))
		return
	}
	p.ack = ack
	select {
	case s.acks <- p:
	case <-s.stop:
	}
}

// A task whose publication fails is published again every
// publishRetryEvery, for publishRetryFor: a stream's leader failover
// stalls publications for 4-13 s. (The stream drops the copies it
// already has: see Submit.)
const (
	publishRetryEvery = 250 * time.Millisecond
	publishRetryFor   = 30 * time.Second
)

// ackLoop waits for the stream's acks of the tasks published with one
// (see send), and publishes again those that failed.
func (s *session) ackLoop() {
	defer s.wg.Done()
	for {
		var p pending
		select {
		case p = <-s.acks:
		case <-s.stop:
			return
		}
		select {
		case <-p.ack.Ok():
		case err := <-p.ack.Err():
			s.mu.Lock()
			settled := p.r.j.settled[p.r.idx]
			s.mu.Unlock()
			if settled {
				continue // cancelled meanwhile
			}
			if time.Since(p.first) < publishRetryFor {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					select {
					case <-time.After(publishRetryEvery):
						s.republish(p)
					case <-s.stop:
					}
				}()
				continue
			}
			s.settle(p.r, nil, fmt.Errorf("cluster: publish a task: %w", err))
		case <-s.stop:
			return
		}
	}
}

// settle gives r's task its outcome, unless it has one.
func (s *session) settle(r ref, b []byte, err error) {
	s.mu.Lock()
	if r.j.settled[r.idx] {
		s.mu.Unlock()
		return
	}
	t := s.unlink(r)
	s.mu.Unlock()
	t.Finish(b, err)
	s.maybeEnd()
}

// unlink marks r settled and forgets it. Called with s.mu held.
func (s *session) unlink(r ref) *clusterhook.Task {
	j := r.j
	j.settled[r.idx] = true
	j.left--
	t := j.tasks[r.idx]
	j.tasks[r.idx] = nil // the task, and its Map's items, are not kept
	delete(s.where, t)
	delete(s.cuts, t)
	if j.left == 0 {
		delete(s.jobs, j.n)
	}
	return t
}

// consumeResults starts reading the pool's results from their stream,
// through the durable consumer s.resultsName (replicated as its stream:
// an ordered consumer lives on one node and dies with it), which it makes
// if it is not there.
func (s *session) consumeResults() (jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	rc, err := s.c.conn.js.CreateOrUpdateConsumer(ctx, resultStream, jetstream.ConsumerConfig{
		Durable: s.resultsName, FilterSubject: resPrefix + s.inst,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: resultsAckWait, MaxAckPending: 10000,
		InactiveThreshold: resultsInactive,
	})
	if err != nil {
		return nil, fmt.Errorf("create the results' consumer: %w", err)
	}
	return rc.Consume(s.onResult, jetstream.PullMaxMessages(resultsBatch))
}

// readResults keeps reading the pool's results, from cc on, until the
// session stops. The client library ends a consumption for good on a
// status message that says its consumer is gone (409 Consumer Deleted,
// 400 Bad Request, a count of pending messages that does not parse): the
// server's, or a peer's, as any client of the server that listens on the
// inboxes sees the results delivered to the pool and can send such a
// message to the same inbox. A consumption that ends before the session
// stops is started again, after resultsRetryFirst and then twice as long
// each time that fails, up to every resultsRetryMax, on a consumer made
// anew, of another name: the old one may hold the ended consumption's
// requests for results at the server, which would take the results the
// new one waits for (and lose them, to be given again after
// resultsAckWait, to those requests again, until they expire), and a new
// one of the same name may be handed the deletion's notice of the old
// one. The results the old one delivered and that were not acknowledged
// come again; a result that comes twice is dropped. Before, the messages
// of the stream that look like a status are deleted (see
// dropStatusLookalikes).
func (s *session) readResults(cc jetstream.ConsumeContext) {
	defer close(s.resultsDone)
	gen := 0
	for {
		select {
		case <-cc.Closed():
		case <-s.stop:
			cc.Stop()
			<-cc.Closed()
			return
		}
		s.c.log.Warn("mp cluster: the pool's reading of its results ended; it starts again", "pool", s.c.opts.Pool)
		for wait := resultsRetryFirst; ; wait = min(2*wait, resultsRetryMax) {
			select {
			case <-time.After(wait):
			case <-s.stop:
				return
			}
			// A work-queue stream takes no two consumers of one
			// subject: the old one goes first, once it has said which
			// results it was given (see dropStatusLookalikes).
			first, last, most, err := s.givenResults()
			if err == nil {
				err = underRequestTimeout(func(ctx context.Context) error {
					return s.c.conn.js.DeleteConsumer(ctx, resultStream, s.resultsName)
				})
				if errors.Is(err, jetstream.ErrConsumerNotFound) {
					err = nil
				}
			}
			if err == nil {
				err = s.dropStatusLookalikes(first, last, most)
			}
			if err == nil {
				gen++
				s.resultsName = resultDurable(s.inst, gen)
				if cc, err = s.consumeResults(); err == nil {
					break
				}
			}
			s.c.log.Warn("mp cluster: read the pool's results", "err", err)
		}
	}
}

// givenResults returns the stream sequences, first to last, between
// which lie the results that the ended reading, through its consumer
// s.resultsName, was given and did not acknowledge, and how many of them
// to look at, at most (see dropStatusLookalikes): those still stored
// there are not acknowledged, as many as the consumer's MaxAckPending at
// most, others' results skipped. Without its consumer
// (gone already, or deleted by an attempt of readResults that failed
// after), the first resultsBatch results of the pool, from the stream's
// start.
func (s *session) givenResults() (first, last uint64, most int, err error) {
	var info *jetstream.ConsumerInfo
	err = underRequestTimeout(func(ctx context.Context) error {
		c, err := s.c.conn.js.Consumer(ctx, resultStream, s.resultsName)
		if err == nil {
			info = c.CachedInfo()
		}
		return err
	})
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return 1, math.MaxUint64, resultsBatch, nil
	case err != nil:
		return 0, 0, 0, err
	}
	return info.AckFloor.Stream + 1, info.Delivered.Stream, math.MaxInt, nil
}

// dropStatusLookalikes deletes, among the pool's results in their
// stream from sequence first to last (most of them at most), those that
// the client library takes for a status of the consumer rather than a
// message (no data, a Status header): a peer's, as a worker's result
// always has data. Stored there, such a message would end each new
// reading of the results as it came. The one that ended the reading is
// among those it was given and did not acknowledge (see givenResults); one
// stored after them ends the next reading at most, once, and is deleted
// then. Each request has its own timeout (requestTimeout): the
// results to look at may be many, the link slow, and a deadline for all
// of them failed each new attempt the same way, so that the pool never
// read its results again.
func (s *session) dropStatusLookalikes(first, last uint64, most int) error {
	var st jetstream.Stream
	err := underRequestTimeout(func(ctx context.Context) (err error) {
		st, err = s.c.conn.js.Stream(ctx, resultStream)
		return err
	})
	if err != nil {
		return err
	}
	for seq, n := first, 0; seq <= last && n < most; n++ {
		if h := testHookGetResult; h != nil {
			h()
		}
		var m *jetstream.RawStreamMsg
		err := underRequestTimeout(func(ctx context.Context) (err error) {
			m, err = st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(resPrefix+s.inst))
			return err
		})
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil
		case err != nil:
			return err
		case m.Sequence > last:
			return nil
		}
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			err := underRequestTimeout(func(ctx context.Context) error { return st.DeleteMsg(ctx, m.Sequence) })
			if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return err
			}
		}
		seq = m.Sequence + 1
	}
	return nil
}

// testHookGetResult, if a test sets it, runs before each request of
// dropStatusLookalikes for a stored result.
var testHookGetResult func()

// underRequestTimeout runs the request f with a ctx bounded by
// requestTimeout.
func underRequestTimeout(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return f(ctx)
}

// resultsBatch is how many results a pool asks for at a time.
const resultsBatch = 1000

const (
	resultsRetryFirst = 250 * time.Millisecond
	resultsRetryMax   = 5 * time.Second
)

// onResult settles the task of a result (the first result of a task
// only: a task run twice has its second result dropped).
func (s *session) onResult(m jetstream.Msg) {
	if h := testHookDropResult; h != nil && h() {
		return // as the client library drops a message: neither read nor acknowledged
	}
	data := m.Data()
	m.Ack()
	s.take(data, m.Subject())
}

// onDirect acknowledges the task of a result sent over core NATS (see
// directMax) to the stream and tells its worker that the pool has the
// result (answerAcked), then settles the task. A task whose Mp-Ack-To is
// no delivery of the pool's own tasks' consumer (see isOwnDelivery) is
// not acknowledged: the answer says the pool took the result only
// (answerTook), and the worker acknowledges it. The worker stores the
// result in the stream only if no such answer comes. The acknowledgement and the answer go
// first: the result is in this process, and only the end of the process
// loses it, which ends its caller too. So the worker does not wait for
// the caller's callback (run as the task settles), the caller's
// goroutine, woken last, runs first, and the stream removes the task
// before the caller's next task comes (a worker's acknowledgement, a
// round trip later, competed with that task for the server's CPU: a bare
// JetStream round trip on a loaded 2-core machine took 183 us with it,
// 130 without). An acknowledgement lost on the
// way leaves the task to be given again after the ack wait, as a
// worker's would: its second result is dropped. A result whose reply is
// no inbox gets no answer, and its task no acknowledgement (see isInbox).
func (s *session) onDirect(m *nats.Msg) {
	if h := testHookDropDirect; h != nil && h() {
		return
	}
	if isInbox(m.Reply) {
		answer := answerTook
		if to := m.Header.Get(ackToHeader); s.isOwnDelivery(to) {
			if s.c.conn.nc.Publish(to, ackOK) == nil {
				answer = answerAcked
			}
		}
		m.Respond(answer)
	}
	// Before the caller has its result and sends its next call.
	s.warm.ran(m.Header.Get(workerHeader))
	s.take(m.Data, m.Subject)
}

// isInbox reports whether subject, the reply subject of a result sent
// directly, is an inbox (a worker's is its node's: see replyMux), where
// the pool may answer. The subject comes from another process: answered
// anywhere else, the pool's answer would be a message of the pool's own
// to a subject a peer chose, such as an empty request of the JetStream
// API that purges the stream of tasks or deletes a consumer. A result
// without such a reply is taken all the same, unanswered and its task
// not acknowledged (its worker stores it in the stream, and acknowledges
// its task itself).
func isInbox(subject string) bool {
	return strings.HasPrefix(subject, nats.InboxPrefix) && literal(subject)
}

// literal reports whether subject, from another process, is one subject
// (no wildcard) that nats.go publishes to as given.
func literal(subject string) bool { return !strings.ContainsAny(subject, " \t\r\n*>") }

// maxAckTail bounds what follows s.ackPrefix in the subject of a delivery
// (five numbers and their dots: see isOwnDelivery).
const maxAckTail = 5 * 21

// isOwnDelivery reports whether subject, the Mp-Ack-To of a result sent
// directly, may acknowledge a delivery of the pool's own tasks' consumer:
// its prefix (s.ackPrefix), then numbers and dots only (delivered count,
// stream and consumer sequences, time, pending). The subject comes from
// another process: one longer than the server takes had it close the
// pool's connection for good.
func (s *session) isOwnDelivery(subject string) bool {
	tail, ok := strings.CutPrefix(subject, s.ackPrefix)
	return ok && tail != "" && len(tail) <= maxAckTail && strings.Trim(tail, "0123456789.") == ""
}

// take settles the task of a result, unless it has its outcome: a task
// run twice has two results, and a result sent directly that was not
// answered in time is also stored in the stream; the first one counts.
func (s *session) take(data []byte, subject string) {
	var res resultMsg
	if res.parse(data) != nil {
		s.c.log.Warn("mp cluster: malformed result dropped", "subject", subject)
		return
	}
	s.mu.Lock()
	j := s.jobs[res.Job]
	if j == nil || res.Index >= uint64(len(j.tasks)) || j.settled[res.Index] {
		s.mu.Unlock()
		return
	}
	r := ref{j, int(res.Index)}
	s.mu.Unlock()
	b, err := decodeOutcome(res.Kind, res.Payload)
	if err != nil {
		s.settle(r, nil, err)
		return
	}
	// The result aliases the message, which nothing else holds.
	s.settle(r, b, nil)
}

// testHookDropResult, if a test sets it, drops the results for which it
// returns true.
var testHookDropResult func() bool

// testHookDropDirect, if a test sets it, drops the results sent directly
// for which it returns true.
var testHookDropDirect func() bool

// decodeOutcome makes a result's error as a local pool gives it.
func decodeOutcome(kind byte, payload []byte) ([]byte, error) {
	switch kind {
	case resOK:
		return payload, nil
	case resError:
		e := new(mp.RemoteError)
		if err := codec.Unmarshal(payload, e); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil, e
	case resTimeout:
		return nil, &remoteTimeout{msg: string(payload)}
	case resCancelled:
		return nil, ErrCancelledByPeer
	default:
		return nil, &lostError{msg: string(payload)}
	}
}

// ErrCancelledByPeer is the error of a task that a worker stopped, or
// skipped, for a cancellation that its pool did not send: another client
// of the server's (see Peers in the package doc). The worker acknowledged
// the task: no worker runs it again.
var ErrCancelledByPeer = errors.New("cluster: task cancelled by a cancellation that its pool did not send")

// remoteTimeout is the error of a task that ran past its timeout on a
// remote worker: it matches mp.ErrTaskTimeout.
type remoteTimeout struct{ msg string }

func (e *remoteTimeout) Error() string { return e.msg }
func (e *remoteTimeout) Is(target error) bool {
	return target == mp.ErrTaskTimeout
}

// lostError is the error of a task whose workers died on every attempt:
// it matches mp.ErrWorkerLost.
type lostError struct{ msg string }

func (e *lostError) Error() string { return e.msg }
func (e *lostError) Is(target error) bool {
	return target == mp.ErrWorkerLost
}

// onMaxDeliveries fails the task that the stream gave MaxAttempts+1
// times without an answer (the worker of the last delivery, which fails
// it, died too) (its workers died, or their machines went away), and
// deletes it from the stream, where it would stay. The advisory gives
// the task's place in the stream, where its subject says whose it is.
func (s *session) onMaxDeliveries(m *nats.Msg) {
	var a struct {
		Seq        uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if json.Unmarshal(m.Data, &a) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	sm, err := s.c.conn.tasks.GetMsg(ctx, a.Seq)
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) { // else gone: its worker acknowledged it meanwhile
			s.c.log.Warn("mp cluster: read a task out of attempts", "seq", a.Seq, "err", err)
		}
		return
	}
	r, ok := s.taskOf(sm.Subject)
	if !ok {
		return // another pool's, or settled
	}
	s.c.conn.tasks.DeleteMsg(ctx, a.Seq)
	s.settle(r, nil, &lostError{msg: fmt.Sprintf("%v: the task's worker was lost on each of its %d attempts", mp.ErrWorkerLost, a.Deliveries)})
}

// taskOf returns the task not settled that a task's subject names, if
// it is this pool's (see jobSubject).
func (s *session) taskOf(subject string) (ref, bool) {
	rest, ok := strings.CutPrefix(subject, instSubject(s.c.opts.Pool, s.fp, s.inst))
	job, idx, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return ref{}, false
	}
	jn, err1 := strconv.ParseUint(job, 10, 64)
	i, err2 := strconv.ParseUint(idx, 10, 64)
	if err1 != nil || err2 != nil {
		return ref{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[jn]
	if j == nil || i >= uint64(len(j.tasks)) || j.settled[i] {
		return ref{}, false
	}
	return ref{j, int(i)}, true
}

// Cancel cancels t: see cancelAll.
func (s *session) Cancel(t *clusterhook.Task) { s.CancelAll([]*clusterhook.Task{t}) }

// CancelAll cancels ts (see cancelAll).
func (s *session) CancelAll(ts []*clusterhook.Task) { s.cancelAll(ts, false) }

// DropAll drops ts (see cancelAll): as CancelAll, but the workers stop
// none of them; one running runs to its end.
func (s *session) DropAll(ts []*clusterhook.Task) { s.cancelAll(ts, true) }

// cancelAll cancels ts (with drop, drops them): their results, if any
// come, go unheard. A task not published never is (or, as it is being
// published, its publisher stops it: see cancelPublish); those
// published go to cancelLoop together, as one request, which purges
// them from the stream and stops them where they run (see stopTasks):
// the tasks of one call are all unlinked here before cancelLoop sees
// any of them, so that it purges their job whole before it tells the
// workers to stop the job's running tasks (else it could stop a
// running one while another, queued, was still in the stream and not
// in the workers' ledgers: the slot freed took it). A chunk sent in
// parts has its parts cancelled with it. A t not registered is marked,
// in t itself, so that nothing is kept for a t settled already: if
// Submit has yet to register it (the pool's side registers its ctx's
// end before it calls Submit), Submit drops it. With drop, what
// cancelLoop tells the workers is a drop, which stops none (see
// cancelMsg).
func (s *session) cancelAll(ts []*clusterhook.Task, drop bool) {
	var reqs []stopReq
	s.mu.Lock()
	for todo := ts; len(todo) > 0; {
		var parts []*clusterhook.Task
		for _, t := range todo {
			r, ok := s.where[t]
			if !ok {
				t.Canceled = true
				continue
			}
			if c := s.cuts[t]; c != nil {
				parts = append(parts, c.parts...)
			}
			s.unlink(r)
			reqs = append(reqs, stopReq{r: r, out: r.cancelPublish(drop), drop: drop})
		}
		todo = parts
	}
	s.mu.Unlock()
	if len(reqs) > 0 {
		select {
		case s.cancels <- reqs:
		case <-s.stop:
		}
		if h := testHookCancelQueued; h != nil {
			h(len(reqs))
		}
	}
	s.maybeEnd()
}

// testHookCancelQueued, if a test sets it, runs once a call of cancelAll
// has queued its n cancelled tasks for cancelLoop.
var testHookCancelQueued func(n int)

// stopReq is a cancelled task for cancelLoop, or stopTasks, to stop: out says
// that it was published (else nothing is to be done); whole stops its
// whole job; drop drops it instead, stopping none (see cancelMsg).
type stopReq struct {
	r                ref
	out, whole, drop bool
}

// cancelLoop purges cancelled tasks that were published from the stream
// and tells the workers to stop them (see stopTasks). The cancellations queued
// are taken together, and a job with nothing left to wait for is purged
// whole: a cancelled Map costs one purge, not one per chunk.
func (s *session) cancelLoop() {
	defer s.wg.Done()
	for {
		var reqs []stopReq
		select {
		case batch := <-s.cancels:
			reqs = append(reqs, batch...)
		case <-s.stop:
			return
		}
	drain:
		for {
			select {
			case batch := <-s.cancels:
				reqs = append(reqs, batch...)
			default:
				break drain
			}
		}
		var stops []stopReq
		// A job's drops and stops apart: a drop purges the same, but
		// must not stand for a stop.
		type kind struct {
			j    *job
			drop bool
		}
		whole := map[kind]bool{}
		for _, req := range reqs {
			k := kind{req.r.j, req.drop}
			if done, seen := whole[k]; !req.out || seen && done {
				continue
			}
			s.mu.Lock()
			whole[k] = k.j.left == 0
			s.mu.Unlock()
			req.whole = whole[k]
			stops = append(stops, req)
		}
		s.stopTasks(stops)
		if h := testHookCancelDone; h != nil {
			for _, req := range reqs {
				h(req.r.j.n, req.r.idx)
			}
		}
	}
}

// testHookCancelDone, if a test sets it, runs once cancelLoop has
// handled the cancellation of a task (job number, index).
var testHookCancelDone func(job uint64, idx int)

// stopTasks purges the tasks of reqs (each a task, or its whole job) from
// the stream, then tells the workers to stop them where they run (or,
// for a drop, to skip them if they take them later); a purge that fails
// is tried again (see purger).
func (s *session) stopTasks(reqs []stopReq) {
	if len(reqs) == 0 {
		return
	}
	pool := s.c.opts.Pool
	prs := make([]purgeReq, len(reqs))
	for i, req := range reqs {
		j := req.r.j
		subj := jobSubject(pool, s.fp, s.inst, j.n) + "."
		if req.whole {
			subj += ">"
		} else {
			subj += strconv.Itoa(req.r.idx)
		}
		cm := cancelMsg{Inst: s.inst, Job: j.n, All: req.whole, Idx: uint64(req.r.idx), Drop: req.drop}
		prs[i] = purgeReq{subject: subj, barrier: jobSubject(pool, s.fp, s.inst, 0) + ".0", pool: pool, cancel: cm.appendTo(nil)}
	}
	s.c.purges.purge(prs)
}

// Any client of the server can send heartbeats, of as many workers as
// it likes, each with up to 2^20 slots (see heartbeat): a pool keeps at
// most maxPeers workers heard from (those heard first; another is counted
// once one of them falls silent), and counts at most maxSlots slots
// (Slots: what Pool.Processes gives, which sizes Map's chunks and an
// Imap's window of chunks in flight, allocated at once). A fingerprint
// longer than maxFingerprint (a build's is 16 hex digits) is no build's.
const (
	maxPeers       = 4096
	maxSlots       = 1 << 16
	maxFingerprint = 64
)

// onHeartbeat notes a worker's heartbeat.
func (s *session) onHeartbeat(m *nats.Msg) {
	var h heartbeat
	fp := m.Subject[len(hbPrefix)+len(s.c.opts.Pool)+1:]
	if h.parse(m.Data) != nil || len(fp) > maxFingerprint {
		return
	}
	s.mu.Lock()
	if _, ok := s.peers[h.ID]; ok || len(s.peers) < maxPeers {
		s.peers[h.ID] = peer{fp: fp, slots: int(h.Slots), last: time.Now()}
	}
	if fp == s.fp {
		s.since = time.Now()
	}
	s.mu.Unlock()
}

// peerTimeout is how long a worker silent counts as gone.
const peerTimeout = 3 * heartbeatEvery

// watch forgets silent workers and warns when tasks wait and no
// compatible worker has been heard for NoWorkerWarning.
func (s *session) watch() {
	defer s.wg.Done()
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-s.stop:
			return
		}
		now := time.Now()
		s.mu.Lock()
		var others []string
		for id, p := range s.peers {
			if now.Sub(p.last) > peerTimeout {
				delete(s.peers, id)
			} else if p.fp != s.fp {
				others = append(others, p.fp)
			}
		}
		slices.Sort(others) // one per build, not per worker
		others = slices.Compact(others)
		waiting := len(s.jobs) > 0
		if !waiting {
			s.since = now
		}
		silent := now.Sub(s.since)
		warn := waiting && silent >= s.c.opts.NoWorkerWarning
		if warn {
			s.since = now // at most one warning per NoWorkerWarning
		}
		s.mu.Unlock()
		if warn {
			s.c.log.Warn("mp cluster: tasks wait and no compatible worker was seen", "pool", s.c.opts.Pool,
				"for", silent.Round(time.Second), "fingerprint", s.fp, "other_builds", others)
		}
	}
}

// Slots returns about how many tasks the cluster's compatible workers run
// at a time: 1 to maxSlots.
func (s *session) Slots() int {
	n := 0
	if s.local != nil {
		n = s.local.slots
	}
	s.mu.Lock()
	for id, p := range s.peers {
		if p.fp == s.fp && (s.local == nil || id != s.local.id) && time.Since(p.last) <= peerTimeout {
			n += p.slots
		}
	}
	s.mu.Unlock()
	return min(max(n, 1), maxSlots)
}

// taskMsgRoom is the room a task's message keeps for what is not its
// encoded argument: its header (taskMsg's fields, the target's name) and
// the NATS header that deduplicates it.
const taskMsgRoom = 4 << 10

// ErrTooLarge is matched (errors.Is) by the error of a task too large
// for the server's messages (a *TooLargeError), and by that of a task
// whose result is too large (an *mp.RemoteError, which unwraps to
// ErrTooLarge: it is registered with mp.RegisterError).
var ErrTooLarge = errors.New("cluster: task too large for the server's max payload")

func init() { mp.RegisterError("github.com/go-mp/mp/cluster.ErrTooLarge", ErrTooLarge) }

// TooLargeError is the error of a task whose encoded argument, with the
// task's header, exceeds the largest message the NATS server accepts
// (its max_payload, 1 MiB by default): an Apply's argument, or a chunk's
// item alone (a chunk too large is cut in parts that fit, see cut; Size
// is then that of the item with its chunk's header). The task is not
// sent.
type TooLargeError struct {
	Size  int   // bytes of the encoded argument
	Limit int64 // the server's max payload
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("cluster: a task's argument of %d bytes does not fit in the server's messages (max payload %d bytes, less %d for the task's header)",
		e.Size, e.Limit, taskMsgRoom)
}

// Is makes a TooLargeError match ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// MaxTaskBytes returns half of the room for an argument in the server's
// messages, which Map sizes its chunks by: sizes exact for strings, byte
// slices and fixed-size items but estimated from a few items for other
// types, so that a chunk twice its estimate still fits. It is a hint
// only: a chunk that does not fit, from any call, is cut where it is sent
// (see cut).
func (s *session) MaxTaskBytes() int {
	return max(int(s.c.conn.nc.MaxPayload())-taskMsgRoom, 1) / 2
}

// Close takes no more jobs; the session ends once its jobs are done.
func (s *session) Close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.maybeEnd()
}

// Terminate fails every task not settled with err, purges those published
// from the stream and stops them in the workers (see stopTasks); the others
// are never published.
func (s *session) Terminate(err error) {
	if f := s.cfg.OnTerminate; f != nil {
		f()
	}
	s.mu.Lock()
	s.closing = true
	var ts []*clusterhook.Task
	var stops []stopReq
	for _, j := range s.jobs {
		out := false
		for i := range j.tasks {
			if r := (ref{j, i}); !j.settled[i] {
				ts = append(ts, s.unlink(r))
				out = r.cancelPublish(false) || out
			}
		}
		if out {
			stops = append(stops, stopReq{r: ref{j, 0}, out: true, whole: true})
		}
	}
	s.mu.Unlock()
	for _, t := range ts {
		t.Finish(nil, err)
	}
	s.stopTasks(stops)
	s.maybeEnd()
}

// maybeEnd ends a closed session once no job is left.
func (s *session) maybeEnd() {
	s.mu.Lock()
	end := s.closing && !s.ended && len(s.jobs) == 0
	if end {
		s.ended = true
	}
	s.mu.Unlock()
	if end {
		go s.teardown()
	}
}

// teardown stops what openSession started and removes the results'
// consumer.
func (s *session) teardown() {
	close(s.stop)
	<-s.resultsDone
	s.unsubscribe()
	s.wg.Wait()
	if s.local != nil {
		s.local.shutdown()
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := s.c.conn.js.DeleteConsumer(ctx, resultStream, s.resultsName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.c.log.Warn("mp cluster: delete the results' consumer", "err", err)
	}
	// Results of tasks that ran twice, or after their job was cancelled.
	rs, err := s.c.conn.js.Stream(ctx, resultStream)
	if err == nil {
		rs.Purge(ctx, jetstream.WithPurgeSubject(resPrefix+s.inst))
	}
	s.c.forget(s)
	close(s.done)
}

func (s *session) Done() <-chan struct{} { return s.done }

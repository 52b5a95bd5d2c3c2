//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp/internal/mgrkv"
	"github.com/go-mp/mp/internal/natsnode"
	"github.com/go-mp/mp/manager"
)

// The "nats" backend of package manager: importing this package lets
// manager.Connect(ctx, "nats", urls, key) keep manager objects in
// JetStream (see the package documentation of manager, "Objects in a
// replicated store"). What manager asks of a store maps onto JetStream
// so:
//
//   - one key-value bucket, kvBucket, made with per-key TTLs (for the
//     leases of locks) and markers kept for markerTTL when a key's lease
//     runs out, so that the next acquirer can tell an expiry from a
//     release;
//   - a key's revision is the stream's sequence, which grows with every
//     write to the bucket and survives a failover: the fencing tokens of
//     locks are these;
//   - a write with a lease is a publish with a TTL header (Nats-TTL) and
//     an expected last sequence for the key's subject, which kv.Update
//     cannot send;
//   - queues are subjects of one work-queue stream, queueStream, each
//     read through one durable consumer with explicit acks.
const (
	kvBucket     = "MP_MANAGER"
	kvSubject    = "$KV." + kvBucket + "."
	queueStream  = "MP_MANAGER_QUEUES"
	queuePrefix  = "mpq."
	markerTTL    = time.Hour
	queueAckWait = 5 * time.Second
	// queuePoll bounds one pull of a waiting Get: a Get whose ctx ends
	// returns within it.
	queuePoll = 250 * time.Millisecond
)

func init() { mgrkv.Register("nats", natsDriver{}) }

type natsDriver struct{}

// clusterKey marks the ctx of Cluster.Manager's Connect with its Cluster,
// whose connection the store then uses.
type clusterKey struct{}

// Open connects to address, authenticating with the token derived from
// key (natsnode.TokenFromAuthkey) when key is not nil.
func (natsDriver) Open(ctx context.Context, address string, key []byte) (mgrkv.Store, error) {
	if c, ok := ctx.Value(clusterKey{}).(*Cluster); ok {
		return newKVStore(ctx, c.conn, false, c.opts.Replicas)
	}
	o := connOptions{URL: address, Name: "mp manager"}
	if key != nil {
		o.Token = natsnode.TokenFromAuthkey(key)
	}
	cn, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	st, err := newKVStore(ctx, cn, true, 0)
	if err != nil {
		cn.close()
		return nil, err
	}
	return st, nil
}

// Manager returns a manager whose objects live in the cluster's
// JetStream, as manager.Connect(ctx, "nats", c.URL(), nil) does, on c's
// connection and with its Options.Replicas; ErrClosed once c is closed.
// Close it before c.
func (c *Cluster) Manager(ctx context.Context) (*manager.Manager, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return manager.Connect(context.WithValue(ctx, clusterKey{}, c), "nats", c.url, nil)
}

// kvStore is mgrkv.Store on JetStream.
type kvStore struct {
	cn    *conn
	owned bool // close cn with the store
	kv    jetstream.KeyValue
	raw   jetstream.Stream // the bucket's stream, for the headers of entries
	qs    jetstream.Stream

	mu   sync.Mutex
	cons map[string]jetstream.Consumer
}

// newKVStore makes the bucket and the queues' stream unless they exist,
// with replicas (0: 3 if the servers are a cluster, else 1).
func newKVStore(ctx context.Context, cn *conn, owned bool, replicas int) (*kvStore, error) {
	s := &kvStore{cn: cn, owned: owned, cons: map[string]jetstream.Consumer{}}
	var err error
	s.kv, err = cn.js.KeyValue(ctx, kvBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		s.kv, err = createReplicated(replicas, func(r int) (jetstream.KeyValue, error) {
			return cn.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: kvBucket, Description: "mp manager objects", Storage: jetstream.FileStorage,
				Replicas: r, LimitMarkerTTL: markerTTL,
			})
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			s.kv, err = cn.js.KeyValue(ctx, kvBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: the manager's bucket: %w", err)
	}
	if s.raw, err = cn.js.Stream(ctx, "KV_"+kvBucket); err != nil {
		return nil, fmt.Errorf("cluster: the manager's bucket: %w", err)
	}
	s.qs, err = cn.js.Stream(ctx, queueStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s.qs, err = createReplicated(replicas, func(r int) (jetstream.Stream, error) {
			return cn.js.CreateStream(ctx, jetstream.StreamConfig{
				Name: queueStream, Subjects: []string{queuePrefix + ">"}, Description: "mp manager queues",
				Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: r,
			})
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s.qs, err = cn.js.Stream(ctx, queueStream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: the manager's queues: %w", err)
	}
	return s, nil
}

// createReplicated creates with replicas, or, when replicas is 0, with 3
// and then 1 if the servers cannot hold 3 (a single server).
func createReplicated[T any](replicas int, create func(int) (T, error)) (T, error) {
	if replicas > 0 {
		return create(replicas)
	}
	v, err := create(3)
	if err != nil && !errors.Is(err, jetstream.ErrBucketExists) && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return create(1)
	}
	return v, err
}

// wrongRevision reports whether err is JetStream refusing a write whose
// expected last sequence for the subject was not the last.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// attempt runs f with a ctx bounded by attemptTimeout, again while it
// fails for want of an answer, until ctx ends: a request whose ctx has a
// far deadline would otherwise wait for it when a failover loses the
// request.
func attempt(ctx context.Context, f func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !retryable(err) || errors.Is(err, jetstream.ErrMsgNotFound):
			return err
		}
		if !pause(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func (s *kvStore) Get(ctx context.Context, key string) (mgrkv.Entry, error) {
	var m *jetstream.RawStreamMsg
	err := attempt(ctx, func(ctx context.Context) (err error) {
		m, err = s.raw.GetLastMsgForSubject(ctx, kvSubject+key)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return mgrkv.Entry{}, nil
	}
	if err != nil {
		return mgrkv.Entry{}, err
	}
	e := mgrkv.Entry{Value: m.Data, Revision: m.Sequence, Op: mgrkv.OpPut}
	if len(m.Header) > 0 {
		switch {
		case m.Header.Get("KV-Operation") != "":
			e.Op = mgrkv.OpDelete
		case m.Header.Get(jetstream.MarkerReasonHeader) == "MaxAge":
			e.Op = mgrkv.OpExpired
		case m.Header.Get(jetstream.MarkerReasonHeader) != "":
			e.Op = mgrkv.OpDelete
		}
	}
	if e.Op != mgrkv.OpPut {
		e.Value = nil
	}
	return e, nil
}

func (s *kvStore) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return s.publish(ctx, &nats.Msg{Subject: kvSubject + key, Data: value})
}

func (s *kvStore) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, mgrkv.Op, error) {
	var cont mgrkv.Contention
	for {
		e, err := s.Get(ctx, key)
		if err != nil {
			return 0, 0, err
		}
		if e.Op == mgrkv.OpPut {
			return 0, 0, mgrkv.ErrExists
		}
		rev, err := s.Update(ctx, key, value, e.Revision, ttl)
		if !errors.Is(err, mgrkv.ErrRevision) {
			return rev, e.Op, err
		}
		// Written in between: look again.
		if err := cont.Lost(ctx); err != nil {
			return 0, 0, err
		}
	}
}

func (s *kvStore) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	return s.publish(ctx, &nats.Msg{Subject: kvSubject + key, Data: value}, opts...)
}

func (s *kvStore) Delete(ctx context.Context, key string, rev uint64) error {
	// kv.Delete's message, made here to be published as every write is.
	m := &nats.Msg{Subject: kvSubject + key, Header: nats.Header{"KV-Operation": []string{"DEL"}}}
	var opts []jetstream.PublishOpt
	if rev > 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	_, err := s.publish(ctx, m, opts...)
	return err
}

// Publishing: each write carries an id of its own (Nats-Msg-Id), and a
// write whose answer does not come within attemptTimeout (a leader's
// failover, a reconnection) is sent again with the same id until ctx ends.
// A clustered JetStream stores it once and answers the repeat with the
// first one's sequence; a single server checks the expected revision
// first, and refuses the repeat of a write it made: the write is then
// taken as made if it is still the subject's last. So a write that
// returns nil was made once, and one that returns an error other than
// ctx's was not made — except on a single server, when another writer
// came in after the write whose answer was lost and before its repeat:
// that write then returns ErrRevision though it was made. One cut short
// by ctx may have been made. A write that no stream answers (no
// responders: an election under way, or the stream deleted by another
// program) is tried again for streamGone at most.
const attemptTimeout = 2 * time.Second

// publish writes m and returns its sequence; ErrRevision when the
// expected last sequence of its subject was not the last.
func (s *kvStore) publish(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (uint64, error) {
	return s.publishID(ctx, m, nats.NewInbox()[len(nats.InboxPrefix):], false, opts...)
}

// publishID is publish with the write's id; sent tells that it may have
// been made already.
func (s *kvStore) publishID(ctx context.Context, m *nats.Msg, id string, sent bool, opts ...jetstream.PublishOpt) (uint64, error) {
	opts = append(opts, jetstream.WithMsgID(id))
	var unansweredSince time.Time
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := s.cn.js.PublishMsg(actx, m, opts...)
		cancel()
		switch {
		case err == nil:
			return ack.Sequence, nil
		case wrongRevision(err):
			if sent {
				if last, gerr := s.raw.GetLastMsgForSubject(ctx, m.Subject); gerr == nil && last.Header.Get(jetstream.MsgIDHeader) == id {
					return last.Sequence, nil
				}
			}
			return 0, fmt.Errorf("%w: %w", mgrkv.ErrRevision, err)
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case !retryable(err):
			return 0, err
		case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
			// No stream listens: its leader is being elected, or
			// another program deleted the stream; the latter is
			// not waited for past streamGone.
			if h := testHookUnanswered; h != nil {
				h("publish")
			}
			if unansweredSince.IsZero() {
				unansweredSince = time.Now()
			} else if time.Since(unansweredSince) > streamGone {
				return 0, err
			}
		default:
			unansweredSince = time.Time{}
		}
		sent = true
		if !pause(ctx, 50*time.Millisecond) {
			return 0, ctx.Err()
		}
	}
}

// retryable reports whether a publish that failed with err may have been
// lost on the way (no answer, no server to answer): anything but an
// answer of JetStream, or a closed connection.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	return !errors.As(err, &apiErr) && !errors.Is(err, nats.ErrConnectionClosed)
}

func (s *kvStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kl, err := s.kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		return nil, err
	}
	defer kl.Stop()
	seen := map[string]bool{}
	var keys []string
	for k := range kl.Keys() {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

func (s *kvStore) Watch(key string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	sub, err := s.cn.nc.Subscribe(kvSubject+key, func(*nats.Msg) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return ch, func() { sub.Unsubscribe() }, nil
}

// consumer returns the durable consumer of queue name, made on first use.
func (s *kvStore) consumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	s.mu.Lock()
	c := s.cons[name]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if h := testHookQueueConsumer; h != nil {
		if err := h(); err != nil {
			return nil, fmt.Errorf("cluster: the consumer of queue %s: %w", name, err)
		}
	}
	c, err := s.qs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "q_" + name, FilterSubject: queuePrefix + name,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: queueAckWait,
		MaxAckPending: -1, Description: "mp manager queue",
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: the consumer of queue %s: %w", name, err)
	}
	s.mu.Lock()
	s.cons[name] = c
	s.mu.Unlock()
	return c, nil
}

// consumerAnswered is consumer, tried again every 50 ms while the server
// does not answer the attempts to make the consumer (no responders,
// JetStream unavailable, an attempt's timeout: a meta or stream leader
// being elected), for leaderWait at most; then it returns the last
// attempt's error.
func (s *kvStore) consumerAnswered(ctx context.Context, name string) (jetstream.Consumer, error) {
	var since time.Time
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		c, err := s.consumer(actx, name)
		cancel()
		if err == nil || ctx.Err() != nil || !unanswered(err) {
			return c, err
		}
		if h := testHookUnanswered; h != nil {
			h("consumer")
		}
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > leaderWait {
			return nil, err
		}
		if !pause(ctx, 50*time.Millisecond) {
			return nil, err
		}
	}
}

// unanswered reports whether err is that of a request the server did not
// answer, as while a leader is elected: no responders, JetStream
// unavailable (503), or the attempt's own timeout.
func unanswered(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &api) && api.Code == 503
}

// testHookQueueConsumer, if a test sets it, runs before each attempt to
// make a queue's consumer; an error it returns is that attempt's.
var testHookQueueConsumer func() error

// remakeTries bounds the attempts of remake that the server refuses.
const remakeTries = 100

// remake forgets the consumer of queue name and makes it again. Its
// deletion by another program (which had the caller remake it) may be
// under way at the server, which then refuses to make it (it takes the
// call for an update of the consumer and finds it gone, or fails to
// write its files as they are removed): an attempt that the server
// refuses is tried again, 10 ms later, remakeTries times at most.
func (s *kvStore) remake(ctx context.Context, name string) (jetstream.Consumer, error) {
	s.mu.Lock()
	delete(s.cons, name)
	s.mu.Unlock()
	for tries := 0; ; tries++ {
		c, err := s.consumer(ctx, name)
		var refused *jetstream.APIError
		if !errors.As(err, &refused) || tries == remakeTries || !pause(ctx, 10*time.Millisecond) {
			return c, err
		}
	}
}

func (s *kvStore) QueuePut(ctx context.Context, name string, value []byte) error {
	_, err := s.publish(ctx, &nats.Msg{Subject: queuePrefix + name, Data: value})
	return err
}

func (s *kvStore) QueueTake(ctx context.Context, name string, wait bool) ([]byte, func(context.Context) error, error) {
	c, err := s.consumerAnswered(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	var unansweredSince time.Time
	remade := false // since the last answer
	for {
		var b jetstream.MessageBatch
		if wait {
			b, err = c.Fetch(1, jetstream.FetchMaxWait(queuePoll))
		} else {
			b, err = c.FetchNoWait(1)
		}
		if err != nil {
			return nil, nil, err
		}
		for m := range b.Messages() {
			return m.Data(), s.ack(m), nil
		}
		switch err := b.Error(); {
		case errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound):
			// Deleted by another program: made anew (with the items
			// the stream still holds).
			if c, err = s.remake(ctx, name); err != nil {
				return nil, nil, err
			}
			continue
		case errors.Is(err, nats.ErrNoResponders):
			// Nothing was taken: the consumer has no leader yet, or
			// another program deleted it, and it is made anew (which
			// changes nothing to a consumer that exists), at each
			// round until that is done: the server may not answer
			// the first attempt (a leader being elected).
			if h := testHookUnanswered; h != nil {
				h("take")
			}
			if unansweredSince.IsZero() {
				unansweredSince = time.Now()
			} else if time.Since(unansweredSince) > leaderWait {
				return nil, nil, err
			}
			if !remade {
				rctx, cancel := context.WithTimeout(ctx, attemptTimeout)
				if nc, err := s.remake(rctx, name); err == nil {
					c, remade = nc, true
				}
				cancel()
			}
			if !pause(ctx, 50*time.Millisecond) {
				return nil, nil, mgrkv.ErrEmpty
			}
			continue
		case err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages):
			return nil, nil, err
		}
		unansweredSince, remade = time.Time{}, false
		if !wait || ctx.Err() != nil {
			return nil, nil, mgrkv.ErrEmpty
		}
	}
}

// leaderWait bounds the time a pull, an ack or the making of a queue's
// consumer (see consumerAnswered) may go on finding no one to answer it
// before its error is returned: a consumer just made on servers in a
// cluster answers once its replicas have elected a leader.
// A variable for tests.
var leaderWait = 10 * time.Second

// testHookUnanswered, if a test sets it, runs each time a request finds
// no one to answer it and is to be tried again: a write ("publish"), a
// queue's pull ("take") or its ack ("ack"), or the making of a queue's
// consumer ("consumer").
var testHookUnanswered func(site string)

// testHookAck, if a test sets it, runs before each attempt of a queue's
// ack; an error it returns is that attempt's, which is then not sent.
var testHookAck func() error

// streamGone bounds the time a write may go on finding no stream to
// answer it: well beyond the longest election (4-13 s) of a failover,
// which a write rides out. A variable for tests.
var streamGone = 30 * time.Second

// pause waits d; false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// ack returns the function that takes m for good: a double ack (which
// returns once the consumer has recorded it), and, on a stream with
// replicas, a wait until the stream has removed the message, which it
// does a round of replication after the consumer recorded the ack, so
// that a Qsize after the Get does not count the item (see QueueLen). The
// wait is bounded by attemptTimeout and its failure is not the Get's:
// the item is the caller's once the ack is recorded.
func (s *kvStore) ack(m jetstream.Msg) func(context.Context) error {
	if s.qs.CachedInfo().Config.Replicas <= 1 {
		return func(ctx context.Context) error { return doubleAck(ctx, m) }
	}
	return func(ctx context.Context) error {
		if err := doubleAck(ctx, m); err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
			_, err := s.qs.GetMsg(ctx, meta.Sequence.Stream)
			if errors.Is(err, jetstream.ErrMsgNotFound) || !pause(ctx, wait) {
				return nil
			}
		}
	}
}

// doubleAck acknowledges m and waits for the answer, again while no one
// answers (see leaderWait): an ack that found no one was not received.
func doubleAck(ctx context.Context, m jetstream.Msg) error {
	start := time.Now()
	for {
		var err error
		if h := testHookAck; h != nil {
			err = h()
		}
		if err == nil {
			err = m.DoubleAck(ctx)
		}
		if !errors.Is(err, nats.ErrNoResponders) || time.Since(start) > leaderWait || !pause(ctx, 50*time.Millisecond) {
			return err
		}
		if h := testHookUnanswered; h != nil {
			h("ack")
		}
	}
}

// QueueLen counts the messages the stream holds on the queue's subject:
// those not delivered yet and those delivered and not acknowledged. The
// stream stores a message before it answers its publish, and (on a
// stream of one replica) removes an acknowledged one before it answers
// the acknowledgement that QueueTake's ack waits for; so the count takes
// in every QueuePut that has returned and no item whose ack has
// returned. The consumer's own figures (NumPending, NumAckPending) would
// not do: the server counts a new message in the consumer's NumPending
// only once a goroutine of its own has passed the message on, after it
// answered the publish, so a Put followed by a Qsize could read a count
// without the item.
//
// On a stream with replicas, the removal of an acknowledged message is
// replicated after the acknowledgement is answered: the ack function of
// QueueTake waits for it (see ack).
func (s *kvStore) QueueLen(ctx context.Context, name string) (int, error) {
	subject := queuePrefix + name
	var n uint64
	err := attempt(ctx, func(ctx context.Context) error {
		info, err := s.qs.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return err
		}
		n = info.State.Subjects[subject]
		return nil
	})
	return int(n), err
}

func (s *kvStore) Close() error {
	if s.owned {
		s.cn.close()
	}
	return nil
}

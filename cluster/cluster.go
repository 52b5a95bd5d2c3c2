//go:build linux

// Package cluster spreads an mp.Pool, or an mp.Executor, over machines,
// on NATS JetStream: a NATS server embedded in this process (loopback
// only, nothing to install), or an existing NATS cluster by URL.
//
//	c, err := cluster.Start(ctx, cluster.Options{})
//	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
//	out, err := double.Map(ctx, pool, items, 0)
//
// Remote workers are the program itself, started with MP_CLUSTER set to
// the cluster's URL (c.URL()): mp.Main, in a program that imports this
// package, makes the process a worker that runs tasks until it is
// signalled (SIGINT, SIGTERM). A program with a CLI of its own calls
// RunWorker instead. A worker runs its tasks in local mp worker
// processes, so TaskTimeout, MaxTasksPerChild, MaxMemory, crash isolation
// and cancellation hold remotely as they do locally.
//
// # Guarantees
//
// Each task runs at least once across the cluster: a task whose worker,
// worker process or machine dies (or stops answering) is given again to
// a worker after the ack wait (Options.AckWait), and a task may run twice
// when its worker dies after running it and before its result reached
// the pool (a small result is sent to the pool directly, and stored in
// the stream only when the pool does not answer: see directMax) or the
// stream. A target that must be idempotent (registered with
// mp.RegisterCtx) finds the task's id, the same on every attempt, with
// TaskID. The caller receives exactly one result per item, in input
// order for Map and Imap: results are deduplicated by job and index.
//
// A target that returns an error or panics fails its item, with the
// *mp.RemoteError a local pool gives (registered errors cross, see
// mp.RegisterError); it is not run again. A task past the pool's
// TaskTimeout fails with mp.ErrTaskTimeout, and is not run again. A task
// whose worker dies on each of Options.MaxAttempts attempts (default 3)
// fails with an error matching mp.ErrWorkerLost: at once when the worker
// process that ran it survived its local child; when the worker process
// itself died, once the ack wait is over and a worker takes the task
// again: it fails the task without running it.
//
// Cancelling a call's ctx, or terminating the pool, gives the caller
// ctx.Err() (mp.ErrPoolTerminated) at once (even while its tasks are
// being published, a Map's one by one: see mp.Pool; but a call whose ctx
// can never end, such as context.Background(), publishes on the
// caller's goroutine, and returns once the publication under way is
// out), and no result of the call's tasks reaches the caller afterwards.
// What becomes of each task depends on where it is when the pool hears
// of the cancellation:
//
//   - not yet published (a call's task is published after the pool
//     registers it, a Map's chunks one by one): it is never published,
//     and never runs;
//   - queued in the stream: it is purged, once the stream has stored it
//     (a task published just before is waited for), and never runs;
//   - taken by a worker: it is stopped there, as a local pool stops a
//     running task: a RegisterCtx target sees its ctx cancelled and has
//     the worker's CancelGrace to return before its worker process is
//     killed, another target has its worker process killed at once. It
//     runs until the cancellation reaches its worker (about a round trip
//     over core NATS), and for that grace; what it did stays done. A task
//     that reaches its worker after the cancellation is skipped, or, if
//     the worker has yet to read the cancellation as it takes the task,
//     started and then stopped at once.
//
// The tasks of one call (a Map's chunks; the chunks an Imap has in
// flight, each a job of its own), and at Terminate those of every call,
// are cancelled as one: every one of them still queued is purged before
// any worker is told to stop one that runs (but if a purge fails: see
// below), so that a worker's slot freed by that stop never takes another
// of them. (The message that tells the workers to stop a job's tasks
// marks the whole job cancelled in their ledgers before it stops any: a
// task of it that a worker takes afterwards is skipped, see below.) What
// never runs: a task the pool had yet to publish, and a task still
// queued when the purge comes. What may still run, until the
// cancellation reaches its worker (and for that worker's grace): a task
// taken before the purge, by a slot that was free, or freed by the end
// of another task, at the time; and a task whose publication was under
// way (it is published, then stopped as a task taken).
//
// Cancellations travel over core NATS, at most once: a worker that does
// not hear one (its connection was down then) runs the task to its end.
// A purge that fails (the server is unreachable, or the stream did not
// answer within 5 s; the pool logs it) is tried again, after 100 ms and
// then twice as long each time, up to every 5 s, until it succeeds or the
// Cluster is closed, also once the pool has ended: once a retry succeeds,
// none of the purged tasks runs. Until then the task stays queued, and
// runs if a worker takes it, unless that worker heard the cancellation (a
// worker keeps the last 65 536 cancellations it heard, whole jobs or
// single tasks, and skips their tasks; the cancellation is sent again
// with each retry). Closing the Cluster gives up the purges not done (it
// logs how many): those tasks stay queued, and run when a worker takes
// them. The results of tasks that ran anyway are dropped. The tasks of a
// pool whose process ended without closing it stay queued and run; their
// results are dropped after a day.
//
// An Imap or ImapUnordered of a target not registered with
// mp.RegisterCtx whose loop stops early (break) drops its chunks in
// flight rather than cancel them: as above, but no worker stops one (a
// local pool would kill its worker process to stop it). A chunk not yet
// published, or still queued in the stream when the purge comes, never
// runs; a chunk that a worker took before the purge runs to its end,
// its result dropped, unless that worker heard the drop before starting
// it (it then skips it, as a cancelled task); the purge is tried again
// as a cancellation's is. The pool does not wait for a dropped chunk that
// runs: it may close meanwhile, and its own local workers (Processes > 0)
// stop theirs when it closes, as they stop any task then (remote workers
// run theirs to their end). A worker built with an mp that predates
// drops ignores them (the message is of a version it does not read): it
// stops nothing, and skips nothing, so that a chunk it took before the
// purge runs whenever it starts.
//
// An Executor's Future.Cancel reports false once the call is submitted:
// the call is in the stream, out of the Future's reach; cancel the
// call's ctx instead.
//
// Pool.Stats of a pool on a cluster returns an empty list, local
// workers (Processes > 0) included: its workers serve the cluster's
// queue, not the pool, and may be in other processes. ReadStatus (and
// `mp cluster status`) lists the workers heard from, with their slots;
// Pool.Processes gives about how many tasks they run at a time.
//
// A task travels as one NATS message, which the server caps (its
// max_payload: 1 MiB by default, and for the embedded server). A chunk of
// items too large for a message (from Map, MapAsync, Imap, ImapUnordered
// or an Executor's SubmitMap, whatever its chunksize) is cut in parts
// that fit, each a task of its own (with the chunk's timeout, and an id
// of its own for TaskID); its results are joined back in order, one per
// item, and the chunk fails, as one not cut, with the error of its first
// failing item in order (the parts before that item's run to their end,
// those after it are cancelled). An argument, or an item alone, too large
// for a message fails its call, or its chunk (every item of that chunk,
// for Imap), with a *TooLargeError (ErrTooLarge) and is not sent. A
// result too large fails its task with an *mp.RemoteError that says so
// and matches ErrTooLarge (a chunk's results are not cut).
//
// Tasks reach only workers built from a compatible program: the subject
// of a task carries a fingerprint of the registered targets' names and
// types, so a worker built from other code never takes them. A pool whose
// tasks wait while no compatible worker has been seen for
// Options.NoWorkerWarning logs a warning. The fingerprint does not
// cover mp's own version: a pool's tasks consumer asks for the priority
// policy that sends a lone task to the worker that ran the last ones,
// and a worker built with an mp older than that policy asks for tasks in
// a way the server refuses on such a consumer, so it takes none. Upgrade
// the workers before, or with, the programs that submit.
//
// # Peers
//
// Pools and workers trust whoever the server lets in: the server's
// authentication (a token, nkeys or credentials, TLS) is the boundary.
// A client of the server, a buggy or hostile one included, can send what
// a pool or a worker sends: tasks (which run registered targets only,
// with the argument it gives), results (the first result of a call in
// flight is its result, whoever sent it), cancellations, heartbeats. What
// such a client cannot do, whatever it sends:
//
//   - make a pool or a worker panic, hang or drop its connection: a
//     message that does not parse is dropped (a result's is logged), a
//     task's by its worker, which terminates it in the stream; a result
//     that names its call but does not decode fails that call with an
//     error matching ErrMalformed (or the decoding error of its type); a
//     worker runs only deliveries of its tasks' consumer; a message that
//     the client library takes for the end of the pool's consumer of
//     results (a forged status, sent to the consumer's inbox or stored in
//     the stream of results) only makes the pool read its results again,
//     on a new consumer, after a quarter of a second (the results
//     delivered and not read come again);
//   - give a call two results, or a result of another call or pool: a
//     result settles the call of its pool (its subject) whose job and
//     index it carries, if that call is in flight, and is dropped
//     otherwise;
//   - have a pool publish to a subject of its choosing: a pool answers a
//     result sent directly on an inbox only, and acknowledges only
//     deliveries of its own tasks' consumer;
//   - make a pool or a worker hold memory without bound: a pool counts
//     at most 4096 workers (those heard from first, while they beat) and
//     65 536 slots (Pool.Processes), a worker keeps at most 65 536
//     cancellations, and the names they keep (a worker's id, a pool's
//     instance, a build's fingerprint) are at most 64 bytes.
//
// It can, on the other hand, forge a result, a cancellation (the worker
// stops or skips the task as for the pool's own, and the call fails with
// ErrCancelledByPeer) or a heartbeat (which silences the warning of no
// compatible worker, and sways Pool.Processes); push a worker's
// remembered cancellations out with 65 536 of its own: a task cancelled
// before a worker takes it then runs there, if the purge had not
// removed it yet (its result is dropped); and slow pools and workers
// down with forged statuses sent to the inboxes of their requests (each
// costs a worker's slot a pause of 200 ms, a pool's reading of results
// one of a quarter of a second). And, as it sees the subjects that
// acknowledge deliveries, it can acknowledge a task for its worker, or
// answer a worker's result sent directly as its pool would ("took"): the
// result is then lost, and its call waits until its ctx ends. (An
// answer that is no pool's, and the server's status that nothing
// listens, send the result to the stream.)
//
// # Durability
//
// Tasks and results are kept in file storage (memory storage with
// replicas stranded tasks: nats-io/nats-server#7680). The embedded server
// writes each message to the operating system before acknowledging it
// and flushes its files to disk every 2 minutes (the nats-server
// default): queued tasks and results survive the end of any process,
// killed or not, but not a crash of the machine within those 2 minutes.
// Options.SyncAlways flushes before each acknowledgement, at a cost in
// speed. An external cluster follows its own setting (sync_interval).
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/mplog"
	"github.com/go-mp/mp/internal/natsnode"
)

// Options configure a Cluster. The zero value starts an embedded
// JetStream server on 127.0.0.1, with file storage in a temporary
// directory.
type Options struct {
	// URL, if set, connects to an existing NATS cluster with JetStream
	// (several URLs separated by commas) instead of starting a server.
	URL string
	// Creds is a NATS credentials file (URL only).
	Creds string
	// Token authenticates to the server (URL only); see also Creds.
	Token string
	// TLS, if set, secures the connection (URL only).
	TLS *tls.Config

	// StoreDir is the embedded server's storage directory; "" makes a
	// temporary one that Close removes.
	StoreDir string
	// SyncAlways makes the embedded server flush its files to disk before
	// acknowledging each message (see Durability).
	SyncAlways bool
	// Replicas is the number of replicas of the streams, if this cluster
	// creates them (1 for the embedded server; up to the number of nodes
	// for an external cluster). The results consumers are replicated as
	// their stream.
	Replicas int

	// Pool names the queue of tasks that workers serve: workers started
	// with another Pool (WorkerOptions.Pool, MP_CLUSTER_POOL) never take
	// these tasks. "" is "default".
	Pool string
	// AckWait is how long a task given to a worker may go without a sign
	// of life from it (its workers report progress on running tasks every
	// third of it) before the task is given to another; 0 means 30 s.
	// With a 3-node cluster, keep it above the 4-13 s that a leader's
	// failover takes.
	AckWait time.Duration
	// MaxAttempts is how many times a task is given to a worker whose
	// process dies before it fails with mp.ErrWorkerLost; 0 means 3.
	MaxAttempts int
	// MaxAckPending caps the tasks held by workers at a time, across all
	// workers; 0 means 20 000. (Workers take only as many as they have
	// free slots.)
	MaxAckPending int
	// NoWorkerWarning is how long a pool's tasks wait with no compatible
	// worker seen before the pool logs a warning; 0 means 30 s.
	NoWorkerWarning time.Duration
	// Logger receives the cluster's warnings; nil means mp's logger
	// (mp.SetLogger).
	Logger *slog.Logger
}

// Cluster is a connection to NATS JetStream that pools use to spread
// their tasks: give it as mp.PoolOptions.Cluster.
type Cluster struct {
	opts Options
	node *natsnode.Node // the embedded server, if any
	url  string
	conn *conn
	log  *slog.Logger
	// purges purges cancelled tasks, and tries again those that fail.
	purges *purger

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
}

// Start connects to the cluster that opts describe, starting the embedded
// server first when opts.URL is empty, and creates the streams if they do
// not exist. ctx bounds the start.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, url: opts.URL, log: mplog.Or(opts.Logger), sessions: map[*session]struct{}{}}
	if opts.URL == "" {
		n, err := natsnode.Start(ctx, natsnode.Options{StoreDir: opts.StoreDir, SyncAlways: opts.SyncAlways, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("cluster: start the embedded server: %w", err)
		}
		c.node, c.url = n, n.URL()
	}
	co := connOptions{URL: c.url, Creds: opts.Creds, Token: opts.Token, TLS: opts.TLS, Name: "mp pool"}
	if c.node != nil {
		co.inProcess = c.node.Server()
	}
	cn, err := dial(ctx, co)
	if err == nil {
		err = cn.ensureStreams(ctx, opts.Replicas)
		if err != nil {
			cn.close()
		}
	}
	if err != nil {
		if c.node != nil {
			c.node.Shutdown()
		}
		return nil, err
	}
	c.conn = cn
	c.purges = newPurger(cn, c.log)
	return c, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// fill sets the defaults and checks o.
func (o *Options) fill() error {
	if o.Pool == "" {
		o.Pool = "default"
	}
	if !nameRE.MatchString(o.Pool) {
		return fmt.Errorf("cluster: bad pool name %q: letters, digits, - and _ only", o.Pool)
	}
	if o.URL != "" && (o.StoreDir != "" || o.SyncAlways) {
		return errors.New("cluster: StoreDir and SyncAlways are for the embedded server, not with URL")
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 20000
	}
	if o.NoWorkerWarning == 0 {
		o.NoWorkerWarning = 30 * time.Second
	}
	if o.Replicas < 0 || o.AckWait < 0 || o.MaxAttempts < 0 || o.MaxAckPending < 0 || o.NoWorkerWarning < 0 {
		return fmt.Errorf("cluster: bad options %+v", *o)
	}
	return nil
}

// URL returns the address remote workers and other programs connect to:
// for the embedded server, nats://127.0.0.1:PORT.
func (c *Cluster) URL() string { return c.url }

// Close terminates the pools still open on c, as their Terminate does
// (their unfinished tasks fail with mp.ErrPoolTerminated), closes the
// connection and stops the embedded server, if Start started one. The
// queued tasks of an external cluster stay there.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var open []*session
	for s := range c.sessions {
		open = append(open, s)
	}
	c.mu.Unlock()
	for _, s := range open {
		s.Terminate(mp.ErrPoolTerminated)
		<-s.Done()
	}
	c.purges.close()
	c.conn.close()
	if c.node != nil {
		c.node.Shutdown()
	}
	return nil
}

// ErrClosed is the error of a pool opened on a closed Cluster.
var ErrClosed = errors.New("cluster: closed")

// OpenPool is for mp.NewPool and mp.NewExecutor, which call it for a
// pool whose PoolOptions.Cluster is c.
func (c *Cluster) OpenPool(cfg clusterhook.Config) (clusterhook.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	s, err := openSession(c, cfg)
	if err != nil {
		return nil, err
	}
	c.sessions[s] = struct{}{}
	return s, nil
}

func (c *Cluster) forget(s *session) {
	c.mu.Lock()
	delete(c.sessions, s)
	c.mu.Unlock()
}

// connOptions say how to reach NATS.
type connOptions struct {
	URL, Creds, Token string
	TLS               *tls.Config
	Name              string
	// inProcess, the embedded server, is reached without a socket.
	inProcess nats.InProcessConnProvider
}

// conn is a NATS connection with its JetStream.
type conn struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	tasks jetstream.Stream
}

// Timeouts of NATS: the client pings the server every pingEvery and gives
// up on it after 2 missed pings (the default, 2 minutes, would leave a
// stopped server unnoticed); an asynchronous publish whose ack does not
// come within publishTimeout fails (by default it would wait forever).
const (
	pingEvery      = time.Second
	publishTimeout = 5 * time.Second
	requestTimeout = 5 * time.Second
)

func dial(ctx context.Context, o connOptions) (*conn, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.PingInterval(pingEvery), nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		// Tasks dropped as a slow consumer come back after the ack wait.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	if o.inProcess != nil {
		opts = append(opts, nats.InProcessServer(o.inProcess))
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Until(d), time.Millisecond)))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", o.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout),
		jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithDefaultTimeout(requestTimeout))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &conn{nc: nc, js: js}, nil
}

// resultsMaxAge is how long a result stays unread in its stream, and
// resultsInactive how long a pool's results consumer lives without the
// pool asking for results: both only matter for a pool that ended
// without closing (its process killed).
// A result the client library dropped (a slow consumer, a reconnection)
// comes again after resultsAckWait; one that comes twice is dropped.
const (
	resultsMaxAge   = 24 * time.Hour
	resultsInactive = time.Hour
	resultsAckWait  = 5 * time.Second
)

// ensureStreams creates the streams of tasks and results unless they
// exist.
func (c *conn) ensureStreams(ctx context.Context, replicas int) error {
	for _, sc := range []jetstream.StreamConfig{
		{Name: taskStream, Subjects: []string{taskPrefix + ">"}},
		// A pool reads its results as they come; those of a pool that
		// died unclosed would stay forever.
		{Name: resultStream, Subjects: []string{resPrefix + ">"}, MaxAge: resultsMaxAge},
	} {
		sc.Retention = jetstream.WorkQueuePolicy
		sc.Storage = jetstream.FileStorage
		sc.Replicas = max(replicas, 1)
		sc.Description = "mp cluster pool"
		_, err := c.js.CreateStream(ctx, sc)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("cluster: create stream %s: %w", sc.Name, err)
		}
	}
	var err error
	c.tasks, err = c.js.Stream(ctx, taskStream)
	if err != nil {
		return fmt.Errorf("cluster: stream %s: %w", taskStream, err)
	}
	return nil
}

func (c *conn) close() {
	c.nc.Close()
}

// TaskID returns the id of the cluster task that ctx, the ctx of a target
// registered with mp.RegisterCtx, belongs to: the same on every attempt
// of the task, and unique in the cluster, so that a target can make its
// effects idempotent. A task is a call (Apply, ApplyAsync, an Executor's
// Submit) or a chunk of items (Map, Imap), whose items share the id.
// Outside a cluster task, TaskID returns "".
func TaskID(ctx context.Context) string { return clusterhook.TaskID(ctx) }

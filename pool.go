//go:build linux

package mp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mplog"
	"github.com/go-mp/mp/internal/ringconn"
)

var (
	// ErrPoolClosed is returned when submitting work to a closed or
	// terminated pool.
	ErrPoolClosed = errors.New("mp: pool is closed")
	// ErrPoolTerminated is the error of tasks that had not finished when
	// the pool was terminated.
	ErrPoolTerminated = errors.New("mp: pool terminated")
	// ErrWorkerLost matches a *WorkerLostError.
	ErrWorkerLost = errors.New("mp: worker lost")
	// ErrTaskTimeout is the error of a task that ran past its timeout; the
	// worker running it was killed.
	ErrTaskTimeout = errors.New("mp: task timed out")
)

// WorkerLostError is the error of a task whose worker process died while
// running it (killed, crashed, out of memory): the task may have run in
// part or in full, but it is never run again. The pool replaced the
// worker. See Pool for what happens to the worker's other tasks.
type WorkerLostError struct {
	Worker   string
	Pid      int
	ExitCode int // as Process.ExitCode reports it: -9 after SIGKILL
}

// Error describes the failure.
func (e *WorkerLostError) Error() string {
	how := fmt.Sprintf("exit code %d", e.ExitCode)
	if e.ExitCode < 0 {
		how = fmt.Sprintf("exit code %d: %v", e.ExitCode, syscall.Signal(-e.ExitCode))
	}
	return fmt.Sprintf("mp: worker %s (pid %d) died running the task (%s)", e.Worker, e.Pid, how)
}

// Is reports whether target is ErrWorkerLost.
func (e *WorkerLostError) Is(target error) bool { return target == ErrWorkerLost }

// Call is a registered target with its argument, made by [NewCall]: a
// pool's initializer, say.
type Call struct {
	target string
	encode func() ([]byte, error) // the argument, encoded as the target expects
}

// NewCall binds f to arg.
func NewCall[A, R any](f *Func[A, R], arg A) *Call {
	return &Call{target: f.name, encode: func() ([]byte, error) { return codec.EncodeOne(arg) }}
}

// encodeFor checks that c's target is registered and encodes its
// argument; role names c in the error. A nil c encodes to nil.
func (c *Call) encodeFor(role string) ([]byte, error) {
	if c == nil {
		return nil, nil
	}
	if _, ok := lookup(c.target); !ok {
		return nil, fmt.Errorf("%w: %s %q", ErrUnknownTarget, role, c.target)
	}
	return c.encode()
}

// PoolOptions configure a Pool. The zero value is a pool of
// runtime.GOMAXPROCS(0) workers.
type PoolOptions struct {
	// Processes is the number of workers; 0 means runtime.GOMAXPROCS(0):
	// the CPUs this process may use, which, unlike CPUCount, follows a
	// container's CPU limit and the GOMAXPROCS environment variable.
	Processes int
	// Initializer, if set, runs in each worker before its first task. If it
	// fails, the pool stops and its tasks fail with that error.
	Initializer *Call
	// Finalizer, if set, runs in each worker that leaves on its own, after
	// its last task: one recycled after MaxTasksPerChild tasks or over
	// MaxMemory, and every worker let go once the pool is closed and its
	// work done. It does not run in a worker that is killed (Terminate, a
	// TaskTimeout, a signal) or that dies, nor when its parent dies, nor
	// after a failed Initializer. The pool waits for it: Join returns once
	// every finalizer has returned. If it fails or panics, the worker
	// exits with code 1.
	Finalizer *Call
	// MaxTasksPerChild, if > 0, replaces a worker after that many tasks
	// (a chunk of Map counts as one), for leaky code.
	MaxTasksPerChild int
	// MaxMemory, if > 0, replaces a worker whose resident memory exceeds
	// it (in bytes) after a task.
	MaxMemory uint64
	// TaskTimeout, if > 0, limits each task: a task still running after it
	// fails with ErrTaskTimeout. Its worker is killed and replaced at once,
	// unless the target was registered with RegisterCtx: its ctx is then
	// cancelled, and the worker is killed only if the target has not
	// returned within CancelGrace.
	TaskTimeout time.Duration
	// CancelGrace is how long a task of a target registered with
	// RegisterCtx has, once its ctx is cancelled (see Pool), to return
	// before its worker is killed and replaced; also how long a worker
	// lives on after this process ends, for its task to see that. 0 means
	// DefaultCancelGrace (5 s), a negative grace none.
	CancelGrace time.Duration
	// CallbackPanic, if set, is called with the value and the stack of a
	// panic in a callback that the pool runs: ApplyAsync's callbacks, a
	// Future's done-callbacks, a Map's progress function. Either way the
	// pool recovers from the panic and goes on with the next callback and
	// result, as Python logs such an exception and goes on. If nil, the
	// panic and its stack are written to stderr.
	CallbackPanic func(value any, stack []byte)
	// Logger, if set, is where the pool reports each worker that it
	// replaced and why, instead of the logger set with SetLogger. The
	// record is "mp: pool worker replaced" ("mp: pool worker ended" if the
	// pool is closed and its work done), with the attributes reason:
	// "died" (with signal, the signal that killed it, or code, its exit
	// code), "task timeout" (with timeout), "task cancelled" (killed
	// because the caller's ctx ended and the task did not stop in time),
	// "max tasks" or "max memory" (with max_memory); worker, its name;
	// pid; slot, its WorkerID, which its replacement takes; tasks, how
	// many it ran. A death or a timeout is logged at level Warn, a
	// cancelled task or a recycling at Info. Workers that Terminate kills
	// are not reported.
	Logger *slog.Logger
	// Cluster, if set, sends the pool's tasks to a cluster of machines
	// (see Cluster and package cluster); Processes is then the number of
	// workers in this process that take tasks from the cluster, or
	// NoLocalWorkers.
	Cluster Cluster
}

// Pool is a pool of worker processes, like Python's multiprocessing.Pool.
// Work is given to it through the methods of a registered Func: Apply,
// ApplyAsync, Map, MapAsync, Imap and ImapUnordered.
//
// A worker that dies (killed, crashed, out of memory) is replaced, and
// Close, Terminate and Join never hang on it. In this process's pool a
// task runs at most once: when a worker dies, exactly the task it was
// running fails, with a *WorkerLostError carrying the worker's exit code
// (-9 after SIGKILL), or ErrTaskTimeout if its timeout killed it; every
// task it had finished is delivered with its result, even if the worker
// had not sent that result yet; the tasks it had been given but not
// started run on another worker. A worker that dies between tasks fails
// none. The one task that fails may have run in part or in full: a task
// counts as running from its start until its result is published: in
// memory shared with the pool as soon as it exists, or, for a result of
// more than about 512 KiB, once all of it is in the ring to the pool.
//
// Every call that gives a pool work takes a ctx, and its end (cancelled,
// or past its deadline) cancels the work:
//   - the call's result (its AsyncResult, Future, Map or Imap) is
//     ctx.Err() at once, without waiting for any worker, nor for the
//     submission of its tasks: a call that is still submitting them (on
//     a cluster, publishing them, which may wait for a slow server)
//     returns then, and none of them that was not submitted by then is
//     submitted afterwards (a task whose publication was under way goes
//     out, and is cancelled as a queued task is: see package cluster);
//     no result of its tasks reaches the caller afterwards;
//   - a task no worker has taken is dropped and never runs; one that a
//     worker holds, queued behind another, is skipped by it and never runs
//     (a worker hears the cancellation of every task it holds: see
//     ledger.requestCancel; one it started as the cancellation came is
//     stopped as a running one);
//   - a running task of a target registered with RegisterCtx has its ctx
//     cancelled; if it still runs CancelGrace later, its worker is killed
//     and replaced;
//   - a running task of any other target has its worker killed and
//     replaced at once.
//
// So after cancellation a task that had started may go on for up to the
// grace (a RegisterCtx target) before it returns or is killed; what it did
// stays done and its result is dropped. A task still runs at most once,
// and only the cancelled task fails with its worker: the worker's other
// tasks are delivered or go back to the queue, as when a worker dies. A
// TaskTimeout stops its task the same way, with ErrTaskTimeout as the
// error; a RegisterCtx target that returns within the grace keeps its
// worker.
type Pool struct {
	opts    PoolOptions
	initArg []byte
	finArg  []byte

	mu      sync.Mutex
	wake    *sync.Cond
	queue   []*task
	qarr    []*task // the array queue lives in (see appendFIFO)
	workers map[*worker]struct{}
	nstart  int  // workers started so far, for names
	lazy    bool // workers start on demand (see spawnWanted)
	spawns  int  // workers spawnWanted is starting, not yet in workers
	state   int
	broken  error // an initializer failed
	nextID  uint64
	answers uint64  // results received so far
	batch   []*task // the dispatcher's, reused
	// kills holds, for each task cancelled while a worker has it, the
	// timer that kills the worker if the task still runs a grace later
	// (see cancelSent); a task leaves it when answered or its worker is
	// gone. Here rather than in each task, which a burst has thousands of.
	kills   map[*task]*time.Timer
	args    argStats       // encoded arguments held
	running sync.WaitGroup // the dispatcher and the workers' readers
	done    chan struct{}  // closed once every worker is gone after Close or Terminate

	// slots tells which slots (see WorkerID) the workers started or
	// starting have; guarded by mu.
	slots []bool

	cluster *clusterPool // set if the tasks go to a cluster: see cluster.go
}

const (
	poolRunning = iota
	poolClosed
	poolTerminated
)

// A worker holds one task at a time while the queue is short, so that no
// task waits behind a slow one while another worker idles, unless its
// tasks are quick (see quickTask): it then holds its share of the queue,
// up to maxPrefetch, however long the queue (unless they are a Map's
// chunks, encoded as they are sent: see sendTo). When the queue is long,
// every worker is kept busy anyway, and each holds more tasks to save
// round trips: up to a quarter of its share of the queue, up to
// maxPrefetch. No worker holds more than prefetchBudget of work at the
// pace of its recent tasks, so that quick tasks go in large batches while
// slow ones stay spread over the workers. A worker that dies fails only
// the task it was running: the others go back to the queue.
const (
	maxPrefetch    = 256
	prefetchBudget = time.Millisecond
)

// quickTask is the pace below which a worker takes its share of the
// queue at once rather than one task (or a quarter of its share) at a
// time: a task shorter than the round trip of a result and the next task
// (tens of microseconds when the worker sleeps between them) keeps nobody
// waiting behind it, and its worker then sleeps and is woken once per
// batch instead of once per task (as the last tasks of every burst
// otherwise were). With a quarter of its share, such a worker ran out of
// tasks before nearly every batch (84% of them in the async benchmark).
const quickTask = 20 * time.Microsecond

// refillBelow is the number of tasks a worker holds below which each of
// its results wakes the dispatcher, even in a burst (see Pool.settle).
const refillBelow = 2

// refillLead is about how long before a worker of quick tasks runs out
// that the dispatcher is woken to send it more: a wake-up of the
// dispatcher, a send, and the worker noticing it take some microseconds.
const refillLead = 20 * time.Microsecond

// refillAt is the number of tasks w holds below which each of its
// results wakes the dispatcher: as many as w runs in refillLead at its
// pace if its tasks are quick (at most half of maxPrefetch, so that a
// full worker is not refilled a task at a time), else refillBelow.
func (w *worker) refillAt() int {
	if w.pace > quickTask {
		return refillBelow
	}
	return min(maxPrefetch/2, max(refillBelow, int(refillLead/max(w.pace, 1))))
}

// task is one unit of work: a call, or a chunk of calls, of a target.
//
// A call of ApplyAsync is one allocation with its task in it (see
// applyCall), and every byte of it is allocated, and scanned by the
// collector while the task is in flight, once per task: what only some
// tasks need is in more, the flags are packed together, and the kill
// timer is in Pool.kills (the task went from 192 to 112 bytes, the call
// from 240 to 152: see TestApplyCallSize).
type task struct {
	id      uint64
	target  string
	arg     []byte
	timeout time.Duration
	// finish receives the encoded result or the error, once: call it
	// through deliver or cancelTask.
	finish finisher
	// unwatch, if set, stops watching the caller's ctx. Set before the
	// task is queued, and read by deliver only (not by the watcher, which
	// may run before it is set: see watch).
	unwatch func() bool

	timer *time.Timer // stops it once the timeout is over (see timeUp)
	// Under the pool's lock: the worker it was sent to last (the timer
	// that kills that worker if the task still runs a grace after it was
	// cancelled is in Pool.kills: see cancelSent).
	w *worker

	more *taskMore // set before the task is queued, and not changed after; nil if none

	flags taskFlags // settled, canceled, timed out: one word (see taskFlags)
	// state tells whether the task went to a worker or was withdrawn by
	// cancel first: taskQueued, taskSent or taskWithdrawn.
	state atomic.Int32
}

// taskFlags are a task's flags, each set once and never cleared, in one
// word rather than a word each: a burst of ApplyAsync has thousands of
// tasks in flight, each in fresh memory, and with these and kill apart
// (see Pool.kills) an ApplyAsync call takes a size class less.
type taskFlags struct{ v atomic.Uint32 }

const (
	flagSettled  uint32 = 1 << iota // finish was called, or is about to be by whoever set this
	flagCanceled                    // its caller cancelled it: dropped if it comes back to the queue
	flagTimedOut                    // its timeout passed
	flagWatched                     // its caller's ctx is watched (see watch): never recycled
)

// set sets flag and reports whether this call set it (it was not set).
func (f *taskFlags) set(flag uint32) bool { return f.v.Or(flag)&flag == 0 }

// has reports whether flag is set.
func (f *taskFlags) has(flag uint32) bool { return f.v.Load()&flag != 0 }

// taskMore is what only some tasks have: a Map's chunks, a cluster's.
type taskMore struct {
	key  string // the id a cluster gave it, for its target's ctx (see cluster.go)
	into []byte // where a large result may be received, if known
	// encode, if set, writes the argument into buf (arg is then nil): a
	// Map's chunk is encoded only when it is sent to a worker, and again if
	// it comes back to the queue without having started (see sendTo).
	encode  func(buf *bytes.Buffer) error
	argSize int  // about how many bytes encode writes, if known, else 0
	chunk   bool // a Map's chunk: its argument and result are lists (here to keep a task small)
}

// extra returns t's more, or an empty one.
func (t *task) extra() *taskMore {
	if t.more == nil {
		return &noMore
	}
	return t.more
}

// noMore is the extra of a task without more; never written.
var noMore taskMore

// A finisher receives a task's outcome: its encoded result, or its error.
// An interface rather than a func, so that a call of ApplyAsync can be its
// task's finisher without a closure to allocate.
type finisher interface {
	done(result []byte, err error)
}

// finishFunc is a func as a finisher.
type finishFunc func(result []byte, err error)

func (f finishFunc) done(result []byte, err error) { f(result, err) }

const (
	taskQueued int32 = iota
	taskSent
	taskWithdrawn
)

// deliver calls t's finish with its outcome unless it was called before.
func (t *task) deliver(result []byte, err error) {
	if !t.flags.set(flagSettled) {
		return
	}
	if t.unwatch != nil {
		t.unwatch()
	}
	t.finish.done(result, err)
}

// withdraw is cancel for the caller's side, where t.unwatch was set: a
// task withdrawn is never delivered, so it stops watching the caller's ctx
// here.
func (t *task) withdraw() bool {
	if !t.cancel() {
		return false
	}
	if t.unwatch != nil {
		t.unwatch()
	}
	return true
}

// cancel withdraws t unless it has been sent to a worker, and reports
// whether it did. The pool never sends a withdrawn task nor calls its
// finish, except to fail it with Terminate or a broken pool.
func (t *task) cancel() bool {
	if !t.state.CompareAndSwap(taskQueued, taskWithdrawn) {
		return false
	}
	t.flags.set(flagCanceled)
	return true
}

// worker is the pool's side of one worker process.
type worker struct {
	p          *Process
	conn       *ringconn.Conn // tasks to it, results back (see newWorkerLink)
	ringMem    []byte         // conn's memory (tests look into it)
	led        *ledger        // what it did, readable after its death
	pending    []*task        // sent and not answered, oldest (running) first
	pendArr    []*task        // the array pending lives in (see appendFIFO)
	retiring   bool           // told us it leaves after its current task
	exclusive  bool           // runs a task with a timeout: gets nothing else meanwhile
	ready      bool           // started and initialised: it said hello
	slot       int            // its WorkerID
	sendMu     sync.Mutex     // orders sends as pending is ordered
	enc        []byte         // sendTo's buffers, under sendMu
	head       []byte         // a task's message before it goes into enc
	msgs       [][]byte
	arg        bytes.Buffer  // a task's argument encoded by sendTo, under sendMu
	sent       chan struct{} // wakes the reader when tasks are sent
	lastAnswer uint64        // p.answers when it last gave a result
	pace       time.Duration // about how long its tasks take (see prefetchBudget)
	stats      WorkerStats
	// hb, with the race detector on, is the happens-before edge from the
	// sending of tasks to the receiving of their results, which goes
	// through the worker and memory shared with it, out of the detector's
	// sight: a call of ApplyAsync is used again once its result is in
	// (see applyCall.recycle), and sendTo's last reads of it came before.
	hb atomic.Uint64
}

// WorkerStats describes one worker.
type WorkerStats struct {
	Name  string
	Pid   int
	Ready bool // started, and initialised: it takes tasks
	Tasks int
	Busy  time.Duration // time spent running tasks
	Idle  time.Duration // time alive and not running tasks
	start time.Time
}

// NewPool starts a pool of worker processes.
func NewPool(opts PoolOptions) (*Pool, error) { return newPool(opts, false) }

// newPool makes a pool. A lazy one starts no worker up front: see
// spawnWanted.
func newPool(opts PoolOptions, lazy bool) (*Pool, error) {
	if opts.Cluster != nil {
		return newClusterPool(opts)
	}
	if opts.Processes < 0 || opts.MaxTasksPerChild < 0 || opts.TaskTimeout < 0 {
		return nil, fmt.Errorf("mp: bad pool options %+v", opts)
	}
	if opts.Processes == 0 {
		opts.Processes = runtime.GOMAXPROCS(0)
	}
	p := &Pool{opts: opts, lazy: lazy, workers: map[*worker]struct{}{}, done: make(chan struct{})}
	p.slots = make([]bool, opts.Processes)
	p.wake = sync.NewCond(&p.mu)
	var err error
	if p.initArg, err = opts.Initializer.encodeFor("initializer"); err != nil {
		return nil, err
	}
	if p.finArg, err = opts.Finalizer.encodeFor("finalizer"); err != nil {
		return nil, err
	}
	for i := 0; i < opts.Processes && !lazy; i++ {
		if err := p.startWorker(false, i); err != nil {
			p.Terminate()
			return nil, err
		}
	}
	p.running.Add(1)
	go p.dispatch()
	return p, nil
}

// spawnWanted starts, in a lazy pool, a worker for each queued task that
// no worker without tasks (started, or starting) will take, up to
// Processes workers, as Python's ProcessPoolExecutor (3.9 and later) does
// on submit. The workers start in the background. Called with p.mu held.
func (p *Pool) spawnWanted() {
	if !p.lazy || p.state == poolTerminated || p.broken != nil {
		return
	}
	free := p.spawns
	for w := range p.workers {
		if len(w.pending) == 0 && !w.retiring {
			free++
		}
	}
	n := min(len(p.queue)-free, p.opts.Processes-len(p.workers)-p.spawns)
	for range n {
		p.spawns++
		p.running.Add(1)
		go func() {
			defer p.running.Done()
			if err := p.startWorker(true, -1); err != nil {
				p.mu.Lock()
				p.breakPool(fmt.Errorf("mp: cannot start a pool worker: %w", err))
				p.mu.Unlock()
			}
			p.checkDone()
		}()
	}
}

// argStats counts the bytes of Map's encoded chunks that the pool holds
// and has not written to a worker, and the most there have been: what a
// Map costs in memory beside its items and results.
type argStats struct {
	held, peak atomic.Int64
	sends      atomic.Int64 // chunks encoded by sendTo
}

func (s *argStats) add(n int) {
	h := s.held.Add(int64(n))
	for p := s.peak.Load(); h > p && !s.peak.CompareAndSwap(p, h); p = s.peak.Load() {
	}
}

// startWorker starts one worker process and its reader, in slot (see
// WorkerID), or in the lowest free slot if slot is -1. spawned says that
// spawnWanted counted it in p.spawns, which it leaves when it joins
// p.workers or fails to start.
func (p *Pool) startWorker(spawned bool, slot int) (err error) {
	p.mu.Lock()
	p.nstart++
	name := "PoolWorker-" + strconv.Itoa(p.nstart)
	slot = p.takeSlot(slot)
	p.mu.Unlock()
	defer func() {
		if err != nil {
			p.mu.Lock()
			if spawned {
				p.spawns--
			}
			p.slots[slot] = false
			p.mu.Unlock()
		}
	}()
	a, b, ring, err := newWorkerLink()
	if err != nil {
		return err
	}
	led, err := newLedger()
	if err != nil {
		a.Close()
		b.Close()
		return err
	}
	args := workerArgs{Conn: b, Ring: ring, MaxTasks: p.opts.MaxTasksPerChild, MaxRSS: p.opts.MaxMemory, Ledger: led.mem, Slot: slot}
	if p.opts.Initializer != nil {
		args.Init, args.InitArg = p.opts.Initializer.target, p.initArg
	}
	if p.opts.Finalizer != nil {
		args.Fin, args.FinArg = p.opts.Finalizer.target, p.finArg
	}
	proc := NewProcess(poolWorker, args)
	proc.Name = name
	proc.Daemon = true
	proc.CancelGrace = p.opts.CancelGrace // its tasks see the end of this process
	err = proc.Start()
	b.Close()
	if err != nil {
		a.Close()
		led.close()
		return err
	}
	w := &worker{p: proc, conn: a, ringMem: ring.e.e, led: led, slot: slot, sent: make(chan struct{}, 1), pace: prefetchBudget,
		stats: WorkerStats{Name: name, Pid: proc.Pid(), start: time.Now()}}
	p.mu.Lock()
	p.workers[w] = struct{}{}
	if spawned {
		p.spawns--
	}
	switch {
	case p.state == poolTerminated || p.broken != nil:
		proc.Kill() // the pool stopped while this worker started
	case p.state == poolClosed && len(p.queue) == 0:
		a.Close() // nothing left for it, and the dispatcher may be gone
	}
	p.wake.Broadcast()
	p.mu.Unlock()
	p.running.Add(1)
	go p.read(w)
	return nil
}

// takeSlot marks slot taken and returns it, or, if slot is -1 (or taken
// already), the lowest free slot. Called with p.mu held.
func (p *Pool) takeSlot(slot int) int {
	if slot < 0 || slot >= len(p.slots) || p.slots[slot] {
		slot = slices.Index(p.slots, false)
		if slot < 0 {
			// Never more workers than Processes, but a slot is not worth a
			// panic if that changes.
			slot = len(p.slots)
			p.slots = append(p.slots, false)
		}
	}
	p.slots[slot] = true
	return slot
}

// submit queues tasks for the dispatcher; a single task with a small
// argument (see directArgMax) goes at once to an idle worker. ctx's end
// cancels them (see cancelTask); if it has ended already, nothing is
// queued and submit returns ctx.Err(). A submission that takes a while
// (a cluster's publication) ends with ctx: see clusterPool.submit.
func (p *Pool) submit(ctx context.Context, ts ...*task) error { return p.submitTasks(ctx, true, ts) }

// submitTasks is submit; with watch false, ctx's end once ts are
// submitted is the caller's to watch (a Map watches it once for all its
// chunks, not once for each: see mapAsync).
//
// If it fails, a caller that finishes ts with the error does so through
// deliver: ctx's watch may be set already, and may have cancelled a task
// meanwhile; deliver stops the watch, and finishes a task only once.
func (p *Pool) submitTasks(ctx context.Context, watch bool, ts []*task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.cluster != nil {
		return p.cluster.submit(p, ctx, watch, ts)
	}
	if watch && ctx.Done() != nil {
		for _, t := range ts {
			// Its finish stops this (deliver), but not when the ctx
			// ended first: unwatch is set only now, before t is queued.
			p.watch(ctx, t)
		}
	}
	p.mu.Lock()
	if p.state != poolRunning {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	if p.broken != nil {
		p.mu.Unlock()
		return p.broken
	}
	for _, t := range ts {
		p.nextID++
		t.id = p.nextID
		if t.timeout == 0 {
			t.timeout = p.opts.TaskTimeout
		}
	}
	p.queue = appendFIFO(p.queue, &p.qarr, ts...)
	if len(p.queue) == 1 && len(ts[0].arg) <= directArgMax && ts[0].extra().encode == nil {
		// Only to an idle worker, which reads it at once, and only an
		// argument that its ring, empty, takes without waiting: a caller
		// must wait neither for a busy worker to take a large argument,
		// nor for a worker that does not read (stopped, hung) when its
		// ctx ends meanwhile. Larger ones go through the dispatcher.
		if w, _ := p.pickWorker(); w != nil && len(w.pending) == 0 {
			t := p.queue[0]
			p.queue[0] = nil // as popTask does, and the array serves again
			p.queue = p.queue[:0]
			p.sendTo(w, []*task{t})
			return nil
		}
	}
	p.spawnWanted()
	p.wake.Broadcast()
	p.mu.Unlock()
	return nil
}

// watch has ctx's end cancel t (cancelTask), until t.unwatch is called.
// The watcher may run before AfterFunc has returned, on another
// goroutine, so it must read nothing written after: flagWatched, set
// before, is what tells it (and applyCall.recycle) that t is watched,
// not t.unwatch.
func (p *Pool) watch(ctx context.Context, t *task) {
	t.flags.set(flagWatched)
	t.unwatch = context.AfterFunc(ctx, func() { p.cancelTask(t, ctx.Err()) })
}

// directArgMax is the largest argument that submit sends to a worker
// itself: a worker with no task has read everything sent to it, so that
// its ring (ringconn.RingSize) takes such a task whole.
const directArgMax = ringconn.RingSize / 4

// dispatch sends queued tasks to workers with room, and tells idle
// workers to leave once the pool is closed and has no work left.
func (p *Pool) dispatch() {
	defer p.running.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.state == poolTerminated {
			return
		}
		for len(p.queue) > 0 && p.queue[0].flags.has(flagCanceled) {
			p.popTask()
		}
		if len(p.queue) == 0 && p.state == poolClosed {
			// Let every worker go once it has nothing left.
			idle := true
			for w := range p.workers {
				if len(w.pending) == 0 {
					w.conn.Close()
				} else {
					idle = false
				}
			}
			if idle && len(p.workers) == 0 && p.spawns == 0 {
				return
			}
			p.wake.Wait()
			continue
		}
		if len(p.queue) == 0 {
			p.wake.Wait()
			continue
		}
		w, room := p.pickWorker()
		if w == nil {
			p.wake.Wait()
			continue
		}
		p.batch = p.takeTasks(p.batch[:0], room)
		p.sendTo(w, p.batch)
		clear(p.batch)
		p.mu.Lock()
	}
}

// takeTasks takes up to room tasks off the queue for one worker. A task
// with a timeout goes alone (its worker gets nothing else meanwhile).
// Called with p.mu held.
func (p *Pool) takeTasks(ts []*task, room int) []*task {
	for len(ts) < room && len(p.queue) > 0 {
		t := p.queue[0]
		if t.timeout > 0 && len(ts) > 0 {
			break
		}
		p.popTask()
		if t.flags.has(flagCanceled) {
			continue
		}
		ts = append(ts, t)
		if t.timeout > 0 {
			break
		}
	}
	return ts
}

// popTask drops the first task of the queue. Its slot is cleared: the
// queue's array, alive as long as the queue, would otherwise keep the task,
// and the items of its Map, until the array is replaced.
func (p *Pool) popTask() {
	p.queue[0] = nil
	p.queue = p.queue[1:]
}

// appendFIFO appends ts to q, a queue taken from the front by slicing
// (q = q[1:], its slot cleared first), whose array is *arr. Append
// alone, once q reaches the end of its array, takes a new one sized
// from what is left of the old: a queue with thousands of tasks in it,
// taken from as fast as it is given to, gets a new array every few
// thousand tasks, whose memory is fresh, a page fault per 512 tasks
// (a third of what ApplyAsync cost the pool's process in a burst went
// to faults). So the tasks move back to the array's start when they
// fill at most half of it, and a new array is twice what they need:
// a queue's memory is taken once for its largest size.
//
// q is moved only when it is a part of *arr reaching its end (a queue
// set from elsewhere, or to nil, is not: it gets an array of its own).
// Slots beyond q are cleared, so the array holds no task it no longer
// has, as the slicing's clearing promises.
func appendFIFO(q []*task, arr *[]*task, ts ...*task) []*task {
	n := len(q) + len(ts)
	if n <= cap(q) {
		return append(q, ts...)
	}
	a := (*arr)[:cap(*arr)]
	if cap(q) > 0 && n <= len(a)/2 && &a[len(a)-1] == &q[:cap(q)][cap(q)-1] {
		copy(a, q)
		clear(a[len(q):])
		return append(a[:len(q)], ts...)
	}
	a = make([]*task, max(2*n, 8))
	copy(a[copy(a, q):], ts)
	*arr = a
	return a[:n]
}

// sendTo gives ts to w in one write. Called with p.mu held; returns with
// it released.
func (p *Pool) sendTo(w *worker, ts []*task) {
	sent := ts[:0]
	for _, t := range ts {
		if !t.state.CompareAndSwap(taskQueued, taskSent) && t.state.Load() == taskWithdrawn {
			continue // cancelled after it was taken from the queue
		}
		if t.timeout > 0 {
			w.exclusive = true
			t.timer = time.AfterFunc(t.timeout, func() { p.timeUp(w, t) })
		}
		t.w = w
		w.pending = appendFIFO(w.pending, &w.pendArr, t)
		sent = append(sent, t)
	}
	if len(sent) == 0 {
		p.mu.Unlock()
		return
	}
	select {
	case w.sent <- struct{}{}:
	default:
	}
	w.sendMu.Lock()
	p.mu.Unlock()
	// The tasks' heads go into one buffer, in packs (see appendPacked),
	// large arguments from where they are; both are kept for the next
	// batch. An argument encoded here goes into w.arg, which holds one at
	// a time: what is ready is written before the next is encoded. So a
	// Map's chunks are encoded one by one as workers take them, into
	// memory used again and again, while the workers run the chunks
	// before (see mapAsync).
	enc, msgs := w.enc[:0], w.msgs[:0]
	packed := 0 // enc up to here is in msgs
	endPack := func() {
		if len(enc) > packed {
			msgs = append(msgs, enc[packed:len(enc):len(enc)])
			packed = len(enc)
		}
	}
	var failed []*task
	var failErrs []error
	var err error // a failed write means the worker died: its reader deals with the tasks
	for _, t := range sent {
		arg, more := t.arg, t.extra()
		if more.encode != nil {
			if w.arg.Len() > 0 {
				endPack()
				err = p.writeArgs(w, msgs)
				enc, msgs, packed = enc[:0], msgs[:0], 0
			}
			if err != nil {
				break
			}
			// Sized at once rather than doubled up to a chunk's size, which
			// copies, and takes fresh memory a page fault at a time.
			w.arg.Grow(more.argSize + 16)
			if eerr := more.encode(&w.arg); eerr != nil {
				w.arg.Reset()
				if p.unsend(w, t) {
					failed, failErrs = append(failed, t), append(failErrs, eerr)
				}
				continue
			}
			arg = w.arg.Bytes()
			p.args.add(len(arg))
			p.args.sends.Add(1)
		}
		msg := taskMsg{ID: t.id, Target: t.target, Chunk: more.chunk, Key: more.key, Arg: arg, Split: len(arg) > splitAbove}
		w.head = msg.appendTo(w.head[:0])
		enc = appendPacked(enc, w.head)
		if msg.Split {
			endPack() // its argument follows
			msgs = append(msgs, arg)
		} else if more.encode != nil {
			p.writeArgs(w, nil) // copied into enc: w.arg is free
		}
	}
	if err == nil {
		endPack()
		p.writeArgs(w, msgs)
	}
	if cap(w.head) > 2*splitAbove {
		w.head = nil // a key's: do not keep its memory
	}
	clear(msgs)
	if cap(enc) <= 1<<20 {
		w.enc = enc
	}
	w.msgs = msgs[:0]
	w.sendMu.Unlock()
	for i, t := range failed {
		t.deliver(nil, failErrs[i])
	}
}

// writeArgs writes msgs to w, and lets go of the argument in w.arg that
// they hold, if any. Called with w.sendMu held.
func (p *Pool) writeArgs(w *worker, msgs [][]byte) error {
	var err error
	if len(msgs) > 0 {
		if raceEnabled {
			w.hb.Add(1) // see worker.hb
		}
		err = w.conn.SendBatch(msgs)
		if errors.Is(err, ringconn.ErrCorrupt) {
			// The worker broke its ring: it may still be alive, and its
			// reader waiting for results that will not come. Killed, it
			// ends, and its reader settles its tasks (see Pool.lost).
			w.p.Kill()
		}
	}
	if n := w.arg.Len(); n > 0 {
		p.args.add(-n)
		w.arg.Reset()
		if w.arg.Cap() > maxArgBuffer {
			w.arg = bytes.Buffer{} // a chunk larger than Map's own: do not keep its memory
		}
	}
	return err
}

// maxArgBuffer is the largest w.arg kept from one task to the next:
// enough for Map's default chunks (see mapChunkBytes).
const maxArgBuffer = 4 * mapChunkBytes

// unsend takes t, whose argument could not be encoded, back from w before
// anything after it is written, so that w's results still match the order
// of its pending tasks, and reports whether it did. If it did not, w died
// meanwhile and lost took t with w's other tasks: t is then back in the
// queue, to fail the same way when it is sent again, or failed already.
// Called with w.sendMu held.
func (p *Pool) unsend(w *worker, t *task) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := taskIndex(w.pending, t.id)
	if i < 0 {
		return false
	}
	w.pending = slices.Delete(w.pending, i, i+1)
	if t.timer != nil {
		t.timer.Stop()
		w.exclusive = false // a task with a timeout goes alone
	}
	p.wake.Broadcast() // w has room again
	return true
}

// pickWorker returns the least loaded worker with room, and how many
// tasks it has room for; or nil.
func (p *Pool) pickWorker() (*worker, int) {
	queueLimit, share := 1, 1
	if n := len(p.workers); n > 0 {
		share = (len(p.queue) + n - 1) / n
		if len(p.queue) >= 8*n {
			queueLimit = min(len(p.queue)/(4*n), maxPrefetch)
		}
	}
	var best *worker
	room := 0
	for w := range p.workers {
		limit := queueLimit
		// Not a Map's chunks in a long queue, though: each is encoded
		// when sent, so another worker would wait for a batch of them.
		if w.pace <= quickTask && (limit == 1 || p.queue[0].extra().encode == nil) {
			limit = max(limit, min(share, maxPrefetch))
		}
		if limit > 1 {
			limit = max(1, min(limit, int(prefetchBudget/max(w.pace, 1))))
		}
		if !w.ready || w.retiring || w.exclusive || len(w.pending) >= limit {
			continue
		}
		r := limit - len(w.pending)
		if m := p.opts.MaxTasksPerChild; m > 0 {
			r = min(r, m-w.stats.Tasks-len(w.pending))
			if r <= 0 {
				continue // it leaves after the tasks it holds
			}
		}
		if p.queue[0].timeout > 0 && len(w.pending) > 0 {
			continue // a timed task starts at once, so its clock is fair
		}
		// Among the least loaded, the one that answered last: it is
		// likely still polling for its next task, while the others sleep.
		if best == nil || len(w.pending) < len(best.pending) ||
			len(w.pending) == len(best.pending) && w.lastAnswer > best.lastAnswer {
			best, room = w, r
		}
	}
	return best, room
}

// read receives a worker's results until it leaves or dies, then replaces
// it if there is still work for it.
func (p *Pool) read(w *worker) {
	defer p.running.Done()
	// Results are decoded by their tasks' finish before the next pack is
	// read, so one buffer serves them all.
	buf := make([]byte, 4<<10)
	var rs []taskResult // a pack's results, and their tasks (nil for a hello)
	var ts []*task
	// A worker that breaks the protocol (a message that does not parse, a
	// result out of turn, ring memory no writer following the protocol
	// leaves) is killed: it may not leave on its own when its link
	// closes, and lost waits for it to end.
	confused, stop := false, false
	futexSleep := false // how w.conn's receives sleep (see awaitResults)
	for !confused && !stop {
		if quick := p.awaitResults(w); quick != futexSleep {
			w.conn.SetFutexSleep(quick)
			futexSleep = quick
		}
		if h := testHookPoolRead.Load(); h != nil {
			(*h)(w.stats.Pid)
		}
		msg, next, err := recvInto(w.conn, buf)
		if err != nil {
			confused = errors.Is(err, ringconn.ErrCorrupt)
			break
		}
		if cap(next) <= 64<<10 {
			buf = next
		}
		if raceEnabled {
			w.hb.Load() // see worker.hb
		}
		if rs, err = parsePack(rs, msg); err != nil {
			confused = true
			break
		}
		n := len(rs)
		if rs[n-1].Split {
			n-- // settled once its result is in, below
		}
		// More of w's results here already: see settle.
		more := n < len(rs) || w.conn.Buffered()
		ts, confused, stop = p.settle(w, rs[:n], ts[:0], more)
		deliverAll(rs[:len(ts)], ts)
		if confused || stop || n == len(rs) {
			continue
		}
		// The result of the last follows; read it before its task leaves
		// pending, so that a worker dying meanwhile still fails it.
		last := rs[n:]
		if last[0].Result, err = p.readResult(w, last[0].ID); err != nil {
			confused = errors.Is(err, ringconn.ErrCorrupt)
			break
		}
		ts, confused, stop = p.settle(w, last, ts[:0], w.conn.Buffered())
		deliverAll(last[:len(ts)], ts)
	}
	if confused {
		w.p.Kill()
	}
	p.lost(w)
}

// settle takes the tasks of w that rs answer off its pending tasks, in
// order, and appends them to ts (nil for a hello); it returns them, and
// whether w is confused (a result out of turn) or its reader stops (its
// initializer failed). more says that more of w's results are here
// already.
func (p *Pool) settle(w *worker, rs []taskResult, ts []*task, more bool) (_ []*task, confused, stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	wake := !more
	for i := range rs {
		res := &rs[i]
		if res.ID == 0 {
			if res.Err != nil {
				// The initializer failed: nothing this pool starts can work.
				p.breakPool(res.Err)
				return ts, false, true
			}
			// Hello: the worker is ready, so a task timer started now
			// does not count its start-up.
			w.ready = true
			wake = true
			ts = append(ts, nil)
			continue
		}
		if len(w.pending) == 0 || w.pending[0].id != res.ID {
			return ts, true, false
		}
		t := w.pending[0]
		w.pending[0] = nil // as popTask does for the queue
		w.pending = w.pending[1:]
		w.exclusive = false
		w.retiring = w.retiring || res.Exit
		w.stats.Tasks++
		// A moving average of the time its tasks take, for prefetching.
		w.pace += (time.Duration(res.Busy) - w.pace) / 4
		p.answers++
		w.lastAnswer = p.answers
		w.stats.Busy += time.Duration(res.Busy)
		wake = wake || res.Exit
		if t.timer != nil {
			t.timer.Stop()
		}
		p.stopKill(t)
		ts = append(ts, t)
	}
	// The dispatcher hears that w has room once per burst of results,
	// at its end, rather than once per pack: it then wakes once and sends
	// w one batch instead of a few tasks at a time. Sooner if w is about
	// to run out of tasks, or leaves.
	if wake || len(w.pending) < w.refillAt() {
		p.wake.Broadcast()
	}
	return ts, false, false
}

// deliverAll delivers each result of rs to its task in ts (none for a
// hello), and clears ts, which is used again.
func deliverAll(rs []taskResult, ts []*task) {
	defer clear(ts)
	for i, t := range ts {
		switch {
		case t == nil:
		case rs[i].Err != nil:
			t.deliver(nil, rs[i].Err)
		default:
			t.deliver(rs[i].Result, nil)
		}
	}
}

// testHookPoolRead, if a test sets it, runs in a worker's reader before
// each receive, with the worker's pid.
var testHookPoolRead atomic.Pointer[func(pid int)]

// readResult receives the large result of task id, into the task's own
// memory for it if it has some (a chunk of raw items: see codec.ChunkInto).
func (p *Pool) readResult(w *worker, id uint64) ([]byte, error) {
	var into []byte
	p.mu.Lock()
	if len(w.pending) > 0 && w.pending[0].id == id {
		into = w.pending[0].extra().into
	}
	p.mu.Unlock()
	if len(into) == 0 {
		msg, _, err := recvInto(w.conn, nil)
		return msg, err
	}
	n, err := w.conn.RecvBytesInto(into, 0)
	var short *BufferTooShortError
	if errors.As(err, &short) {
		return short.Message, nil // the wrong size: decoding will say so
	}
	return into[:n], err
}

// awaitResults returns once w owes the pool something: its hello, or the
// results of tasks sent to it. It also returns when w has exited, for the
// reader to see the end of its connection. (An idle worker sends nothing,
// so the reader need not sit on its ring.) How the reader then waits,
// polling the ring or asleep, the ring decides by whether polling has
// been paying (see internal/ringconn).
//
// It also reports whether w's tasks are quick (see quickTask): the reader
// then sleeps on a futex in the ring rather than on the socket (see
// ringconn.Conn.SetFutexSleep). Results then come every few
// microseconds, and a sleep on the socket cost each of them a message on
// the socket in the worker, and the runtime's network poller and a
// goroutine's wake-up here: a fifth of the pool's time with quick tasks.
// A sleep on a futex holds its P, but a reader sleeps only while results
// are owed, and at most futexHold (10 ms) before it moves to the socket:
// after a slow task among quick ones, say. (A worker that dies is then
// heard up to that much later.)
func (p *Pool) awaitResults(w *worker) (quick bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w.ready && len(w.pending) == 0 {
		p.mu.Unlock()
		select {
		case <-w.sent:
		case <-w.p.Done():
			p.mu.Lock()
			return false
		}
		p.mu.Lock()
	}
	return w.pace <= quickTask
}

// lost cleans up after a worker that left or died, and starts a
// replacement if the pool still has work.
//
// It settles the tasks the worker held from what the worker's connection
// and ledger say, so that a task runs at most once: every result the
// worker published, on its connection or in its ledger, is delivered; the
// task it had started and not finished fails (with a *WorkerLostError, or
// ErrTaskTimeout if its timer killed the worker); the tasks it had not
// started go back to the front of the queue. The reader has read the
// connection to its end before this.
func (p *Pool) lost(w *worker) {
	if raceEnabled {
		w.hb.Load() // see worker.hb: the ledger's results, too
	}
	w.conn.Close()
	w.p.Join(context.Background())
	code, _ := w.p.ExitCode()
	w.p.Close()
	recs, started := w.led.results(), w.led.started.Load()
	p.mu.Lock()
	delete(p.workers, w)
	p.slots[w.slot] = false // for its replacement, or a later worker
	pending := w.pending
	w.pending = nil
	for _, t := range pending {
		p.stopKill(t) // w is gone, and the task with it or back in the queue
	}
	// Only ids of tasks sent to w count: the ledger is the worker's to write.
	type delivery struct {
		t   *task
		rec ledgerRecord
	}
	var delivered []delivery
	for _, r := range recs {
		if i := taskIndex(pending, r.res.ID); i >= 0 {
			delivered = append(delivered, delivery{pending[i], r})
			pending = slices.Delete(pending, i, i+1)
		}
	}
	// The worker runs its tasks in the order sent: those before the one it
	// started (none, unless it lost track) may have run as well.
	var failed []*task
	if i := taskIndex(pending, started); i >= 0 {
		failed, pending = pending[:i+1], pending[i+1:]
	}
	stopped := p.state == poolTerminated || p.broken != nil
	failErrs := make([]error, len(failed))
	var timedOut *task
	cancelled := false // a task its caller cancelled was among them
	for i, t := range failed {
		expired := t.flags.has(flagTimedOut) || t.timer != nil && !t.timer.Stop()
		if t.flags.has(flagCanceled) {
			cancelled = true
		}
		switch {
		case stopped:
			failErrs[i] = p.termErr()
		case expired:
			timedOut = t
			failErrs[i] = fmt.Errorf("%w after %v (worker %s killed)", ErrTaskTimeout, t.timeout, w.stats.Name)
		default:
			failErrs[i] = &WorkerLostError{Worker: w.stats.Name, Pid: w.stats.Pid, ExitCode: code}
		}
	}
	for _, d := range delivered {
		if d.t.timer != nil {
			d.t.timer.Stop()
		}
	}
	for _, t := range pending {
		if t.timer != nil {
			t.timer.Stop() // it never started: its clock starts again when sent
			t.timer = nil
		}
	}
	if stopped {
		failed = append(failed, pending...)
		for range pending {
			failErrs = append(failErrs, p.termErr())
		}
	} else {
		p.queue = append(pending, p.queue...)
	}
	// A lazy pool starts a worker when there is work for it.
	wanted := !stopped && (p.state == poolRunning || len(p.queue) > 0)
	replace := wanted && !p.lazy
	p.spawnWanted()
	p.wake.Broadcast()
	retiring, tasks := w.retiring, w.stats.Tasks
	p.mu.Unlock()
	if !stopped {
		p.logWorkerEnd(w, wanted, code, retiring, tasks, timedOut, cancelled)
	}
	// Results first, decoded before the ledger goes; then the failures.
	for _, d := range delivered {
		if d.rec.res.Err != nil {
			d.t.deliver(nil, d.rec.res.Err)
		} else {
			d.t.deliver(d.rec.out, nil)
		}
	}
	for i, t := range failed {
		t.deliver(nil, failErrs[i])
	}
	w.led.close()
	if replace {
		if err := p.startWorker(false, w.slot); err != nil {
			p.mu.Lock()
			p.breakPool(fmt.Errorf("mp: cannot replace a pool worker: %w", err))
			p.mu.Unlock()
		}
	}
	p.checkDone()
}

// logWorkerEnd reports a worker that ended while the pool was running or
// finishing its work, and why (see PoolOptions.Logger), unless the pool
// let it go: it left with code 0 without having said it would. replaced
// tells whether the pool replaces it, at once, or once there is work for
// it in a lazy pool (an Executor's).
func (p *Pool) logWorkerEnd(w *worker, replaced bool, code int, retiring bool, tasks int, timedOut *task, cancelled bool) {
	attrs := make([]slog.Attr, 0, 6)
	level := slog.LevelWarn
	switch {
	case timedOut != nil:
		attrs = append(attrs, slog.String("reason", "task timeout"), slog.Duration("timeout", timedOut.timeout))
	case cancelled:
		// Killed by the pool: the task's caller cancelled it, and it
		// did not stop within the grace.
		level = slog.LevelInfo
		attrs = append(attrs, slog.String("reason", "task cancelled"))
	case code < 0:
		attrs = append(attrs, slog.String("reason", "died"), slog.Int("signal", -code))
	case code > 0:
		attrs = append(attrs, slog.String("reason", "died"), slog.Int("code", code))
	case !retiring:
		return // the pool let it go
	case p.opts.MaxTasksPerChild > 0 && tasks >= p.opts.MaxTasksPerChild:
		level = slog.LevelInfo
		attrs = append(attrs, slog.String("reason", "max tasks"))
	default:
		level = slog.LevelInfo
		attrs = append(attrs, slog.String("reason", "max memory"), slog.Uint64("max_memory", p.opts.MaxMemory))
	}
	attrs = append(attrs, slog.String("worker", w.stats.Name), slog.Int("pid", w.stats.Pid),
		slog.Int("slot", w.slot), slog.Int("tasks", tasks))
	msg := "mp: pool worker replaced"
	if !replaced {
		msg = "mp: pool worker ended"
	}
	mplog.Or(p.opts.Logger).LogAttrs(context.Background(), level, msg, attrs...)
}

// cancelTask stops t, whose caller's ctx ended with err: its caller gets
// err at once; t never runs if it has not been sent to a worker, else
// cancelSent stops it in its worker. See Pool for the guarantees.
func (p *Pool) cancelTask(t *task, err error) {
	if p.cluster != nil {
		p.cluster.cancelTask(t, err)
		return
	}
	t.flags.set(flagCanceled) // dropped if it comes back to the queue
	// Settled first, so that the worker's answer to the cancellation does
	// not reach the caller instead of err; finished last, so that once the
	// caller has err, a task not started is sure not to start.
	claimed := t.flags.set(flagSettled)
	if !t.cancel() {
		p.mu.Lock()
		p.cancelSent(t)
		p.mu.Unlock()
	}
	if claimed {
		t.finish.done(nil, err) // not deliver: t.unwatch is not this goroutine's to read
	}
}

// cancelTasks is cancelTask of each of ts, the tasks of one call, which
// a pool on a cluster cancels together (see clusterPool.cancelTasks).
func (p *Pool) cancelTasks(ts []*task, err error) {
	if p.cluster != nil {
		p.cluster.cancelTasks(ts, err)
		return
	}
	for _, t := range ts {
		p.cancelTask(t, err)
	}
}

// dropTasks drops ts, the tasks of one call whose results nobody waits
// for, and stops none that a worker holds. In a local pool, those still
// in the pool's queue never start, and those sent to a worker (running,
// or held behind its running task: see prefetchBudget) run to their end,
// their finish called as they end; a pool on a cluster gives their
// callers err at once (see clusterPool.dropTasks).
func (p *Pool) dropTasks(ts []*task, err error) {
	if p.cluster != nil {
		p.cluster.dropTasks(ts, err)
		return
	}
	for _, t := range ts {
		t.withdraw()
		t.flags.set(flagCanceled)
	}
}

// timeUp fails t, whose timeout has passed on w, with ErrTaskTimeout. A
// task of a target that does not see its ctx is stopped by killing w at
// once (lost fails it); any other has its ctx cancelled first.
func (p *Pool) timeUp(w *worker, t *task) {
	t.flags.set(flagTimedOut)
	if !seesCtx(t.target) {
		w.p.Kill()
		return
	}
	claimed := t.flags.set(flagSettled) // as in cancelTask
	p.mu.Lock()
	p.cancelSent(t)
	p.mu.Unlock()
	if claimed {
		err := fmt.Errorf("%w after %v (its ctx cancelled in worker %s)", ErrTaskTimeout, t.timeout, w.stats.Name)
		t.finish.done(nil, err)
	}
}

// cancelSent stops t if a worker holds it: the worker skips it if it has
// not started it, or cancels its ctx; if t runs in it a grace later (at
// once for a target that does not see its ctx), the worker is killed, and
// lost replaces it. Called with p.mu held.
func (p *Pool) cancelSent(t *task) {
	w := t.w
	if w == nil || taskIndex(w.pending, t.id) < 0 || p.kills[t] != nil {
		return // answered, back in the queue (and dropped there), or stopping
	}
	w.led.requestCancel(t.id)
	grace := graceOr(p.opts.CancelGrace)
	first := grace
	if !seesCtx(t.target) {
		first = 0
	}
	var check func()
	check = func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if t.w != w || taskIndex(w.pending, t.id) < 0 {
			return
		}
		if w.led.started.Load() == t.id {
			w.p.Kill()
			return
		}
		// Held behind another task, and asked to skip it: look again in
		// case it starts anyway (see ledger.requestCancel).
		p.kills[t] = time.AfterFunc(max(grace, time.Millisecond), check)
	}
	if p.kills == nil {
		p.kills = map[*task]*time.Timer{}
	}
	p.kills[t] = time.AfterFunc(first, check)
}

// stopKill stops cancelSent's timer of t, if any, and forgets it: t was
// answered, or its worker is gone. Called with p.mu held.
func (p *Pool) stopKill(t *task) {
	if k := p.kills[t]; k != nil {
		k.Stop()
		delete(p.kills, t)
	}
}

// seesCtx reports whether target was registered to see its ctx.
func seesCtx(target string) bool {
	e, ok := lookup(target)
	return ok && e.seesCtx
}

// taskIndex returns the index of the task with id in ts, or -1.
func taskIndex(ts []*task, id uint64) int {
	return slices.IndexFunc(ts, func(t *task) bool { return t.id == id })
}

// runCallback runs fn, a callback given by the user, on a goroutine of
// the pool's (or the caller's), so that a panic in it neither kills the
// process nor stops the delivery of results: the panic is reported (see
// PoolOptions.CallbackPanic) and the pool goes on. p may be nil, for a
// callback of no pool's: the report then goes to stderr.
func (p *Pool) runCallback(fn func()) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		stack := debug.Stack()
		if p != nil && p.opts.CallbackPanic != nil {
			p.opts.CallbackPanic(r, stack)
			return
		}
		fmt.Fprintf(os.Stderr, "mp: panic in a callback (recovered): %v\n%s", r, stack)
	}()
	fn()
}

func (p *Pool) termErr() error {
	if p.broken != nil {
		return p.broken
	}
	return ErrPoolTerminated
}

// breakPool fails all queued work with err and stops replacing workers.
// Called with p.mu held.
func (p *Pool) breakPool(err error) {
	if p.broken != nil {
		return
	}
	p.broken = err
	q := p.queue
	p.queue = nil
	for _, t := range q {
		go t.deliver(nil, err)
	}
	for w := range p.workers {
		w.p.Kill()
	}
	p.wake.Broadcast()
}

// checkDone closes p.done once the pool is closed or terminated and every
// worker is gone.
func (p *Pool) checkDone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != poolRunning && len(p.workers) == 0 && p.spawns == 0 && (len(p.queue) == 0 || p.broken != nil || p.state == poolTerminated) {
		select {
		case <-p.done:
		default:
			close(p.done)
		}
	}
}

// Close stops the pool from taking new work; the work already given
// finishes, then the workers exit. Close does not wait: Join does.
func (p *Pool) Close() error {
	if p.cluster != nil {
		p.cluster.close(p)
		return nil
	}
	p.mu.Lock()
	if p.state == poolRunning {
		p.state = poolClosed
	}
	p.wake.Broadcast()
	p.mu.Unlock()
	p.checkDone()
	return nil
}

// Terminate kills the workers at once; unfinished tasks fail with
// ErrPoolTerminated.
func (p *Pool) Terminate() error {
	if p.cluster != nil {
		p.cluster.terminate(p)
		return nil
	}
	p.mu.Lock()
	p.state = poolTerminated
	q := p.queue
	p.queue = nil
	for w := range p.workers {
		w.p.Kill()
	}
	p.wake.Broadcast()
	p.mu.Unlock()
	for _, t := range q {
		t.deliver(nil, ErrPoolTerminated)
	}
	p.checkDone()
	return nil
}

// Join waits, after Close or Terminate, until every worker has exited, or
// ctx is done. Workers gone already win over a ctx done already.
func (p *Pool) Join(ctx context.Context) error {
	p.mu.Lock()
	state := p.state
	p.mu.Unlock()
	if state == poolRunning {
		return errors.New("mp: Join on a running pool: Close or Terminate it first")
	}
	if err := awaitReadyFirst(ctx, p.done); err != nil {
		return err
	}
	p.running.Wait()
	return nil
}

// awaitReadyFirst waits until ready is closed or ctx is done, and returns
// ctx.Err() only if ready was not closed when it was called: like Python's
// timeout=0, a ctx already done means "look, don't wait", so whatever is
// ready wins over it. (A bare select picks at random between two ready
// cases.) Every waiting call of the pool and the executor waits with it.
func awaitReadyFirst(ctx context.Context, ready <-chan struct{}) error {
	select {
	case <-ready:
		return nil
	default:
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats describes the current workers.
func (p *Pool) Stats() []WorkerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	out := make([]WorkerStats, 0, len(p.workers))
	for w := range p.workers {
		s := w.stats
		s.Ready = w.ready
		s.Idle = now.Sub(s.start) - s.Busy
		out = append(out, s)
	}
	return out
}

// Processes returns the number of workers the pool keeps; for a pool on
// a cluster, about how many tasks the cluster's workers run at a time
// (those of this process and the remote ones heard from), at least 1.
func (p *Pool) Processes() int {
	if p.cluster != nil {
		return p.cluster.s.Slots() // what Map's chunks are sized for
	}
	return p.opts.Processes
}

// decodeResult decodes a task's encoded result.
func decodeResult[R any](b []byte) (R, error) {
	var r R
	err := decodeResultInto(b, &r)
	return r, err
}

// decodeResultInto decodes a task's encoded result into *r.
func decodeResultInto[R any](b []byte, r *R) error {
	if err := codec.DecodeOne(b, r); err != nil {
		return fmt.Errorf("mp: decode task result into %T: %w", *r, err)
	}
	return nil
}

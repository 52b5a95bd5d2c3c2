//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/go-mp/mp/internal/codec"
)

var (
	// ErrCancelled is the error of a Future cancelled before a worker took
	// it, like Python's CancelledError.
	ErrCancelled = errors.New("mp: future cancelled")
	// ErrExecutorShutdown is the error of work submitted to an Executor
	// after Shutdown or Terminate.
	ErrExecutorShutdown = errors.New("mp: cannot schedule new futures after shutdown")
	// ErrInvalidChunksize is the error of SubmitMap with a chunksize
	// below 1, as Python's Executor.map raises ValueError.
	ErrInvalidChunksize = errors.New("mp: chunksize must be at least 1")
)

// Executor runs calls of registered Funcs in a Pool of worker processes
// and returns a Future for each, like Python's
// concurrent.futures.ProcessPoolExecutor. Give it work with the methods
// Submit and SubmitMap of a Func; wait for it with the Futures, with
// [AsCompleted] or with [WaitFutures]. Shut it down when done, as Python's
// with-statement does:
//
//	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 4})
//	...
//	defer ex.Shutdown(ctx, mp.ShutdownOptions{})
//	fut := square.Submit(ctx, ex, 7)
//	v, err := fut.Result(ctx)
//
// Unlike Python's executor, which breaks as a whole when a worker dies, an
// Executor fails only the Future whose call the worker was running (with a
// *WorkerLostError, which matches ErrWorkerLost), replaces the worker and
// goes on: the calls the worker had finished keep their results, and those
// it had taken but not started run on another worker. A call runs at most
// once (see Pool for the exact guarantee).
type Executor struct {
	pool *Pool

	mu      sync.Mutex
	shut    bool
	pending map[*futureCore]struct{} // submitted and not done
}

// NewExecutor starts an executor on a new pool of worker processes, which
// start on demand, as in Python 3.9 and later: a worker starts when a call
// is submitted and no worker is free to take it, up to Processes workers.
// Every option of the pool applies: Processes is Python's max_workers,
// Initializer its initializer and initargs, MaxTasksPerChild its
// max_tasks_per_child; TaskTimeout and MaxMemory have no Python
// counterpart.
func NewExecutor(opts PoolOptions) (*Executor, error) {
	p, err := newPool(opts, true)
	if err != nil {
		return nil, err
	}
	return &Executor{pool: p, pending: map[*futureCore]struct{}{}}, nil
}

// Processes returns the most worker processes ex runs (Python's
// max_workers); Stats lists those started so far.
func (ex *Executor) Processes() int { return ex.pool.Processes() }

// Stats describes the current workers, as Pool.Stats does.
func (ex *Executor) Stats() []WorkerStats { return ex.pool.Stats() }

// submit gives t, the task of c, to the pool; ctx's end cancels it.
func (ex *Executor) submit(ctx context.Context, c *futureCore, t *task) {
	c.task = t
	ex.mu.Lock()
	if ex.shut {
		ex.mu.Unlock()
		c.resolve(ErrExecutorShutdown, false, nil)
		return
	}
	ex.pending[c] = struct{}{}
	ex.mu.Unlock()
	c.onDone(func() {
		ex.mu.Lock()
		delete(ex.pending, c)
		ex.mu.Unlock()
	})
	if err := ex.pool.submit(ctx, t); err != nil {
		if errors.Is(err, ErrPoolClosed) {
			err = ErrExecutorShutdown // Shutdown came between
		}
		t.deliver(nil, err) // see Pool.submitTasks
	}
}

// ShutdownOptions say what [Executor.Shutdown] does beside refusing new
// work. The zero value is Python's shutdown(): wait, and cancel nothing.
type ShutdownOptions struct {
	// NoWait makes Shutdown return at once (Python's wait=False): the
	// workers exit once the work given to them is done.
	NoWait bool
	// CancelFutures cancels the futures that no worker has taken yet
	// (Python's cancel_futures=True).
	CancelFutures bool
}

// Shutdown stops the executor from taking new work: Submit and SubmitMap
// then fail with ErrExecutorShutdown. With opts.CancelFutures, the
// futures that no worker has taken yet are cancelled. Then, unless
// opts.NoWait, Shutdown waits until every future is done and every worker
// has exited, or until ctx is done, when it returns ctx.Err() and leaves
// the work going (Terminate stops it). Shutdown may be called more than
// once: with NoWait and CancelFutures, then with the zero options, it
// cancels what it can, then waits for the rest.
func (ex *Executor) Shutdown(ctx context.Context, opts ShutdownOptions) error {
	ex.mu.Lock()
	ex.shut = true
	var queued []*futureCore
	if opts.CancelFutures {
		for c := range ex.pending {
			queued = append(queued, c)
		}
	}
	ex.mu.Unlock()
	for _, c := range queued {
		c.cancel()
	}
	ex.pool.Close()
	if opts.NoWait {
		return nil
	}
	if err := ex.pool.Join(ctx); err != nil {
		return err
	}
	// Futures failed by a broken pool resolve on a goroutine of their own.
	ex.mu.Lock()
	left := make([]*futureCore, 0, len(ex.pending))
	for c := range ex.pending {
		left = append(left, c)
	}
	ex.mu.Unlock()
	for _, c := range left {
		if err := awaitReadyFirst(ctx, c.done); err != nil {
			return err
		}
	}
	return nil
}

// Terminate kills the workers at once, as Python's terminate_workers does
// (new in Python 3.14): the futures not done fail with ErrPoolTerminated,
// or ErrCancelled for those cancelled before. Follow it with Shutdown to
// wait for the workers to be reaped.
func (ex *Executor) Terminate() error {
	ex.mu.Lock()
	ex.shut = true
	ex.mu.Unlock()
	return ex.pool.Terminate()
}

// Submit runs f(arg) in a worker of ex and returns its Future at once. If
// ex has been shut down, arg cannot be encoded or ctx is done, the Future
// has already failed. ctx's end cancels the call: the Future fails with
// ctx.Err() at once (Cancelled reports false: that is for Cancel), the call
// never runs if no worker has started it, and a running one is stopped as
// Pool describes.
func (f *Func[A, R]) Submit(ctx context.Context, ex *Executor, arg A) *Future[R] {
	fut := newFuture[R](ex.pool)
	b, err := codec.EncodeOne(arg)
	if err != nil {
		fut.c.resolve(err, false, nil)
		return fut
	}
	ex.submit(ctx, &fut.c, fut.task(f.name, false, b, decodeResult[R]))
	return fut
}

// SubmitMap is Python's Executor.map: it submits f(item) for every item
// at once, as Submit does, in chunks of chunksize items, and returns an
// iterator over the results in the order of items. ctx's end cancels the
// calls, as with Submit. It is meant to be ranged over once. The
// iterator waits for each result in turn; the first error, or ctx ending,
// is yielded and ends it. When the loop ends early, the chunks that no
// worker has taken yet are cancelled. If ex has been shut down, the
// iterator yields only ErrExecutorShutdown; if chunksize is below 1, only
// an error matching ErrInvalidChunksize, and nothing is submitted (Python
// raises ValueError).
func (f *Func[A, R]) SubmitMap(ctx context.Context, ex *Executor, items []A, chunksize int) iter.Seq2[R, error] {
	if chunksize < 1 {
		err := fmt.Errorf("%w, got %d", ErrInvalidChunksize, chunksize)
		return func(yield func(R, error) bool) {
			var zero R
			yield(zero, err)
		}
	}
	type chunk struct {
		n   int
		fut *Future[[]R]
	}
	var chunks []chunk
	for off := 0; off < len(items); off += chunksize {
		end := min(off+chunksize, len(items))
		fut := newFuture[[]R](ex.pool)
		n := end - off
		decode := func(b []byte) ([]R, error) {
			vals := make([]R, n)
			if err := codec.DecodeChunk(b, vals); err != nil {
				return nil, fmt.Errorf("mp: decode results: %w", err)
			}
			return vals, nil
		}
		if b, err := codec.EncodeChunk(items[off:end]); err != nil {
			fut.c.resolve(err, false, nil)
		} else {
			ex.submit(ctx, &fut.c, fut.task(f.name, true, b, decode))
		}
		chunks = append(chunks, chunk{end - off, fut})
	}
	return func(yield func(R, error) bool) {
		defer func() {
			for _, c := range chunks {
				c.fut.Cancel()
			}
		}()
		var zero R
		for _, c := range chunks {
			vals, err := c.fut.Result(ctx)
			if err == nil && len(vals) != c.n {
				err = fmt.Errorf("mp: a chunk of %d items gave %d results", c.n, len(vals))
			}
			if err != nil {
				yield(zero, err)
				return
			}
			for _, v := range vals {
				if !yield(v, nil) {
					return
				}
			}
		}
	}
}

// Future is the eventual result of a call submitted to an Executor, like
// Python's concurrent.futures.Future. Its methods may be called from any
// goroutine.
//
// A future is pending until a worker takes it, running from then until
// its result or error arrives, then done: finished, failed, or cancelled.
// "Running" is approximate, as in Python, where a call waiting in the call
// queue counts as running: a worker takes calls ahead, one while it runs
// another so that it never idles between calls, more when many are
// waiting, and a call a worker has taken can no longer be cancelled.
type Future[R any] struct {
	c   futureCore
	val R
}

// AnyFuture is a *Future of any result type: [AsCompleted] and
// [WaitFutures] take futures of mixed types as AnyFutures. Only *Future
// implements it.
type AnyFuture interface {
	Done() bool
	Running() bool
	Cancelled() bool
	Cancel() bool
	Err(ctx context.Context) error
	core() *futureCore
}

func newFuture[R any](pool *Pool) *Future[R] {
	return &Future[R]{c: futureCore{pool: pool, done: make(chan struct{})}}
}

// task returns the pool task of fut: a call of target on the encoded arg
// (a chunk of As if chunk) whose result, decoded by decode, resolves fut.
func (fut *Future[R]) task(target string, chunk bool, arg []byte, decode func([]byte) (R, error)) *task {
	t := &task{target: target, arg: arg}
	if chunk {
		t.more = &taskMore{chunk: true}
	}
	t.finish = finishFunc(func(out []byte, err error) {
		if t.state.Load() == taskWithdrawn && !isCtxErr(err) {
			fut.c.resolve(ErrCancelled, true, nil) // failed by Terminate after Cancel
			return
		}
		var v R
		if err == nil {
			v, err = decode(out)
		}
		fut.c.resolve(err, false, func() { fut.val = v })
	})
	return t
}

func (fut *Future[R]) core() *futureCore { return &fut.c }

// isCtxErr reports whether err is what a ctx's Err returns: a call
// cancelled by its ctx (see Pool.cancelTask), not by Future.Cancel.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Result waits for the call to finish, or ctx to be done, and returns its
// result or error: the target's error as a *RemoteError, a
// *WorkerLostError if its worker died, ErrCancelled if the future was
// cancelled, or ctx.Err(). A future done already wins over a ctx done
// already: as Python's result(timeout=0), Result with an expired ctx looks
// without waiting.
func (fut *Future[R]) Result(ctx context.Context) (R, error) {
	if err := awaitReadyFirst(ctx, fut.c.done); err != nil {
		var zero R
		return zero, err
	}
	return fut.val, fut.c.err
}

// Err waits like Result and returns only the error: nil if the call
// succeeded. It is Python's Future.exception.
func (fut *Future[R]) Err(ctx context.Context) error {
	_, err := fut.Result(ctx)
	return err
}

// Cancel cancels the call if no worker has taken it yet, and reports
// whether the future is now cancelled: false if the call is running or
// done (true if it was cancelled before). A cancelled future is done, its
// error is ErrCancelled, and its callbacks run.
func (fut *Future[R]) Cancel() bool { return fut.c.cancel() }

// Cancelled reports whether the future was cancelled.
func (fut *Future[R]) Cancelled() bool {
	fut.c.mu.Lock()
	defer fut.c.mu.Unlock()
	return fut.c.cancelled
}

// Running reports whether a worker has taken the call and its result has
// not arrived yet (see Future on what that means).
func (fut *Future[R]) Running() bool {
	return !fut.Done() && fut.c.task != nil && fut.c.task.state.Load() == taskSent
}

// Done reports whether the call has finished, failed or been cancelled.
func (fut *Future[R]) Done() bool {
	select {
	case <-fut.c.done:
		return true
	default:
		return false
	}
}

// AddDoneCallback arranges for fn(fut) to be called in this process when
// fut is done, or at once, on the caller's goroutine, if it is done
// already. Callbacks run in the order they were added, on the goroutine
// that completes the future: the pool's, for a call that finished or
// failed, which waits for them before delivering that worker's next
// result, so they should be quick; Cancel's, for a cancelled one. A panic
// in fn is recovered and reported, and the next callback runs (see
// PoolOptions.CallbackPanic), as Python logs an exception raised by a
// callback and goes on.
func (fut *Future[R]) AddDoneCallback(fn func(*Future[R])) {
	fut.c.onDone(func() { fn(fut) })
}

// futureCore is the part of a Future that does not depend on its type.
type futureCore struct {
	pool *Pool // whose CallbackPanic reports the callbacks' panics
	task *task // nil if the call failed before reaching the pool
	done chan struct{}

	mu        sync.Mutex
	err       error
	cancelled bool
	callbacks []func()
}

// resolve makes c done with err, unless it is done already; set, if not
// nil, stores the result first. The callbacks run on this goroutine.
func (c *futureCore) resolve(err error, cancelled bool, set func()) bool {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return false
	default:
	}
	if set != nil {
		set()
	}
	c.err, c.cancelled = err, cancelled
	close(c.done)
	cbs := c.callbacks
	c.callbacks = nil
	c.mu.Unlock()
	for _, fn := range cbs {
		c.pool.runCallback(fn)
	}
	return true
}

func (c *futureCore) cancel() bool {
	c.mu.Lock()
	select {
	case <-c.done:
		defer c.mu.Unlock()
		return c.cancelled
	default:
	}
	c.mu.Unlock()
	if c.task == nil || !c.task.withdraw() {
		return false
	}
	// Withdrawn: the pool will not finish it, except to fail it with
	// Terminate, which then resolves it as cancelled too.
	c.resolve(ErrCancelled, true, nil)
	return true
}

// onDone calls fn once c is done: at once if it is.
func (c *futureCore) onDone(fn func()) {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		c.pool.runCallback(fn)
		return
	default:
	}
	c.callbacks = append(c.callbacks, fn)
	c.mu.Unlock()
}

// failed reports whether c is done with an error other than cancellation.
func (c *futureCore) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return c.err != nil && !c.cancelled
	default:
		return false
	}
}

// uniqueFutures drops repeated futures, keeping the first of each.
func uniqueFutures[F AnyFuture](futures []F) []F {
	seen := make(map[*futureCore]bool, len(futures))
	out := make([]F, 0, len(futures))
	for _, f := range futures {
		if c := f.core(); !seen[c] {
			seen[c] = true
			out = append(out, f)
		}
	}
	return out
}

// notifyDone returns a channel that receives the index in futures of each
// future as it is done, those done already first, in order.
func notifyDone[F AnyFuture](futures []F) <-chan int {
	ch := make(chan int, len(futures)) // never blocks a callback
	for i, f := range futures {
		f.core().onDone(func() { ch <- i })
	}
	return ch
}

// nextDone receives the next index from ch, or ctx.Err() if ctx is done
// and ch has nothing ready.
func nextDone(ctx context.Context, ch <-chan int) (int, error) {
	select {
	case i := <-ch:
		return i, nil
	default:
	}
	select {
	case i := <-ch:
		return i, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// AsCompleted yields the futures as they are done (finished, failed or
// cancelled), those done already first, as Python's as_completed does;
// each future once, however often it is given. If ctx ends first, it
// yields ctx.Err() with a zero F and stops, but only after the futures
// done already, even with a ctx done already: the error is never a
// future's own, which Result or Err gives. Futures of mixed result types
// are passed as AnyFutures: mp.AsCompleted[mp.AnyFuture](ctx, f1, f2).
func AsCompleted[F AnyFuture](ctx context.Context, futures ...F) iter.Seq2[F, error] {
	return func(yield func(F, error) bool) {
		fs := uniqueFutures(futures)
		ch := notifyDone(fs)
		for range fs {
			i, err := nextDone(ctx, ch)
			if err != nil {
				var zero F
				yield(zero, err)
				return
			}
			if !yield(fs[i], nil) {
				return
			}
		}
	}
}

// WaitMode says when [WaitFutures] returns.
type WaitMode int

const (
	// AllCompleted waits until every future is done (Python's
	// ALL_COMPLETED, the default).
	AllCompleted WaitMode = iota
	// FirstCompleted waits until any future is done (FIRST_COMPLETED).
	FirstCompleted
	// FirstException waits until any future fails, or every future is
	// done (FIRST_EXCEPTION). A cancelled future does not count as failed.
	FirstException
)

// String returns the mode's name as Python spells it.
func (m WaitMode) String() string {
	switch m {
	case AllCompleted:
		return "ALL_COMPLETED"
	case FirstCompleted:
		return "FIRST_COMPLETED"
	case FirstException:
		return "FIRST_EXCEPTION"
	}
	return fmt.Sprintf("WaitMode(%d)", int(m))
}

// WaitFutures waits, as Python's concurrent.futures.wait does, until mode
// is satisfied or ctx is done, and returns the futures done and those not
// done, each in the order given, without repeats. The error is ctx.Err()
// if ctx ended first (done and notDone still tell where things stand), or
// an error for an unknown mode; never a future's own. Futures done already
// count before a ctx done already: with an expired ctx, WaitFutures looks
// without waiting, as Python's wait(timeout=0) does.
func WaitFutures[F AnyFuture](ctx context.Context, futures []F, mode WaitMode) (done, notDone []F, err error) {
	if mode < AllCompleted || mode > FirstException {
		return nil, nil, fmt.Errorf("mp: WaitFutures with an unknown mode %v", mode)
	}
	fs := uniqueFutures(futures)
	ch := notifyDone(fs)
	for range fs {
		i, e := nextDone(ctx, ch)
		if e != nil {
			err = e
			break
		}
		if mode == FirstCompleted || (mode == FirstException && fs[i].core().failed()) {
			break
		}
	}
	for _, f := range fs {
		if f.Done() {
			done = append(done, f)
		} else {
			notDone = append(notDone, f)
		}
	}
	return done, notDone, err
}

//go:build linux

package mp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/prefault"
)

// AsyncResult is the result of work given to a Pool without waiting for it,
// like Python's AsyncResult.
type AsyncResult[R any] struct {
	// state is resultPending, resultWaited or resultIn. It is the one
	// word that delivering a result and looking at it touch, so that
	// neither takes a lock (a lock and an unlock on each side, per task,
	// were a tenth of what ApplyAsync costs the pool's process). val and
	// err are written once, before state becomes resultIn, and read only
	// after.
	//
	// A burst of ApplyAsync makes thousands of AsyncResults, each fresh
	// memory: one is 32 bytes for a word-sized R (48 with a lock of its
	// own and the error inline). What is rare is apart: the lock that
	// makes ch is one of resultLocks, and an error is boxed.
	state atomic.Uint32
	ch    chan struct{} // made once someone waits before the result is in; under resultLock
	val   R
	err   *error // the error, if the work failed
}

// resultLocks guard the making and closing of AsyncResults' channels, a
// lock shared by the results whose address picks it: they are taken
// only by a waiter that comes before the result, and by the delivery of
// a result someone waits for.
var resultLocks [64]struct {
	sync.Mutex
	_ [56]byte // one lock per cache line
}

// lock returns a's lock (see resultLocks).
func (a *AsyncResult[R]) lock() *sync.Mutex {
	h := uintptr(unsafe.Pointer(a))
	return &resultLocks[(h>>5^h>>11)%uintptr(len(resultLocks))].Mutex
}

// setErr records err as a's error, before a is published.
func (a *AsyncResult[R]) setErr(err error) {
	if err != nil {
		box := err // boxed here: &err would move every call's err to the heap
		a.err = &box
	}
}

// failure returns a's error: call it once a's result is in.
func (a *AsyncResult[R]) failure() error {
	if a.err == nil {
		return nil
	}
	return *a.err
}

// The states of an AsyncResult: pending with no channel made, pending
// with one (a waiter: the result's arrival closes it), and in.
const (
	resultPending uint32 = iota
	resultWaited
	resultIn
)

// closedChan is the Done channel of results that were in before anyone
// asked: most results, when tasks are many and short, need no channel.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// newAsyncResult returns a new AsyncResult, written once already (an
// atomic store, which the compiler keeps): its memory, fresh from the
// system in a first burst of calls, is then mapped in by a write rather
// than by a read (a waiter's look at state, or the write barrier's look
// at a pointer it overwrites while the collector runs), which maps a
// read-only page that the next write copies, with a flush of every CPU's
// TLB. A third of this process's time in a first burst of 10 000 small
// calls went to page faults, two fifths of them such copies.
func newAsyncResult[R any]() *AsyncResult[R] {
	a := &AsyncResult[R]{}
	a.state.Store(resultPending)
	return a
}

// resolve resolves a with v and err. An AsyncResult is resolved once:
// its callers make sure of that (see task.deliver).
func (a *AsyncResult[R]) resolve(v R, err error) {
	a.val = v
	a.setErr(err)
	a.publish()
}

// resolveEncoded resolves a with err, or if err is nil with the result
// encoded in out, decoded into a (not into memory of its own), and returns
// what it resolved a with. Once, as resolve.
func (a *AsyncResult[R]) resolveEncoded(out []byte, err error) (R, error) {
	if err == nil {
		err = decodeResultInto(out, &a.val)
	}
	a.setErr(err)
	v := a.val // read before publish: a's reader may have it from then on
	a.publish()
	return v, err
}

// publish makes the result, written already, visible, and wakes those
// who wait for it.
func (a *AsyncResult[R]) publish() {
	if a.state.Swap(resultIn) == resultWaited {
		mu := a.lock()
		mu.Lock()
		close(a.ch)
		mu.Unlock()
	}
}

// result returns the result if it is in.
func (a *AsyncResult[R]) result() (v R, ok bool, err error) {
	if a.state.Load() != resultIn {
		return v, false, nil
	}
	return a.val, true, a.failure()
}

// Get waits for the result, or for ctx to be done. A result ready
// already wins over a ctx done already: as Python's get(timeout=0), Get
// with an expired ctx looks without waiting.
func (a *AsyncResult[R]) Get(ctx context.Context) (R, error) {
	if v, ok, err := a.result(); ok {
		return v, err
	}
	if err := awaitReadyFirst(ctx, a.Done()); err != nil {
		var zero R
		return zero, err
	}
	v, _, err := a.result()
	return v, err
}

// Wait waits until the result is ready or ctx is done. A result ready
// already wins over a ctx done already, as with Get.
func (a *AsyncResult[R]) Wait(ctx context.Context) error {
	return awaitReadyFirst(ctx, a.Done())
}

// Ready reports whether the work has finished.
func (a *AsyncResult[R]) Ready() bool {
	_, ok, _ := a.result()
	return ok
}

// Successful reports whether the work finished without error. It returns
// an error if the work has not finished, as Python raises ValueError.
func (a *AsyncResult[R]) Successful() (bool, error) {
	_, ok, err := a.result()
	if !ok {
		return false, fmt.Errorf("mp: result not ready")
	}
	return err == nil, nil
}

// Done returns a channel closed once the result is ready.
func (a *AsyncResult[R]) Done() <-chan struct{} {
	if a.state.Load() == resultIn {
		return closedChan
	}
	mu := a.lock()
	mu.Lock()
	defer mu.Unlock()
	if a.ch == nil {
		// If the result came meanwhile, publish saw no waiter and closes
		// no channel: the result is in. a.ch stays nil then, else a later
		// caller, who saw the result pending too, would get a channel
		// that nobody closes.
		if !a.state.CompareAndSwap(resultPending, resultWaited) {
			return closedChan
		}
		a.ch = make(chan struct{}) // publish closes it once it has the lock
	}
	return a.ch
}

// Apply runs f(arg) in a worker of pool and waits for its result. ctx's
// end cancels the call, as with ApplyAsync.
func (f *Func[A, R]) Apply(ctx context.Context, pool *Pool, arg A) (R, error) {
	res := f.ApplyAsync(ctx, pool, arg, nil, nil)
	return res.Get(ctx)
}

// ApplyAsync runs f(arg) in a worker of pool without waiting. When it
// finishes, callback (on success) or errCallback (on failure), if not nil,
// runs in this process; they should return quickly, as they hold up the
// delivery of that worker's next results. A panic in them is recovered and
// reported (see PoolOptions.CallbackPanic).
//
// ctx's end cancels the call: the result is ctx.Err() at once (and
// errCallback runs), the task never runs if no worker has started it, and
// a running one is stopped as Pool describes. A ctx done already fails the
// call before anything is sent.
func (f *Func[A, R]) ApplyAsync(ctx context.Context, pool *Pool, arg A, callback func(R), errCallback func(error)) *AsyncResult[R] {
	res := newAsyncResult[R]()
	c, _ := f.calls.Get().(*applyCall[R])
	if c == nil {
		c = new(applyCall[R])
		c.state.Store(taskQueued) // see newAsyncResult
	}
	c.res, c.target, c.finish = res, f.name, c
	if callback != nil || errCallback != nil {
		c.cb = &applyCallbacks[R]{pool, callback, errCallback}
	}
	if pool.cluster == nil {
		c.calls = &f.calls // a cluster keeps its tasks: see recycle
	}
	var err error
	if c.arg, err = encodeArgInto(arg, &c.small); err == nil {
		err = pool.submit(ctx, &c.task)
	}
	if err != nil {
		// Through deliver, which claims the call: a submit that failed
		// may have set its ctx's watch already, whose cancelTask would
		// otherwise settle the call a second time (its errCallback
		// twice, and its error changed under a caller who had it).
		c.deliver(nil, err)
	}
	return res
}

// applyCall is a call of ApplyAsync: its task, which it finishes. Its
// parts, and a small argument (see encodeArgInto), are one allocation
// beside the AsyncResult: one per part counts when tasks take a
// microsecond. The AsyncResult is apart so that a caller that holds it
// does not hold the task, its argument, and what they refer to (its
// worker, its ctx, the callbacks).
//
// Its size counts: a burst of ApplyAsync has thousands of calls in
// flight, each fresh memory (page faults) until the burst's calls come
// back; at 152 bytes rather than 168 a call takes a size class less
// (160 bytes, not 176).
// So what most calls lack, callbacks, is apart, behind cb.
type applyCall[R any] struct {
	task
	res   *AsyncResult[R]
	cb    *applyCallbacks[R] // nil if it has none
	calls *sync.Pool         // its Func's, where it goes once done (see recycle); nil on a cluster
	small [smallArg]byte     // the argument, if it is raw and fits
}

// applyCallbacks are the callbacks of an ApplyAsync, and the pool that
// runs them.
type applyCallbacks[R any] struct {
	pool        *Pool
	callback    func(R)
	errCallback func(error)
}

// smallArg is the largest argument of a fixed-size type that travels
// from inside its applyCall rather than from memory of its own.
const smallArg = 16

// encodeArgInto encodes arg as codec.EncodeOne does, into small if arg is
// of a fixed-size type (see codec.RawChunks) that fits there, else into
// memory of its own.
func encodeArgInto[A any](arg A, small *[smallArg]byte) ([]byte, error) {
	if unsafe.Sizeof(arg) <= smallArg && codec.RawChunks[A]() {
		n := copy(small[:], codec.AsBytes(unsafe.Slice(&arg, 1)))
		return small[:n:n], nil
	}
	return codec.EncodeOne(arg)
}

// done resolves the call's result and runs its callback.
func (c *applyCall[R]) done(out []byte, err error) {
	v, err := c.res.resolveEncoded(out, err)
	if cb := c.cb; cb != nil {
		if err != nil && cb.errCallback != nil {
			cb.pool.runCallback(func() { cb.errCallback(err) })
		} else if err == nil && cb.callback != nil {
			cb.pool.runCallback(func() { cb.callback(v) })
		}
	}
	c.recycle()
}

// recycle gives c back to its Func, for another ApplyAsync, if nothing
// can refer to it any more. A call, done, is out of the pool's queue
// and its worker's tasks, and its one delivery is over (see
// task.deliver); what may still hold it are the watch of its ctx (whose
// cancelTask may run on after it was settled), its timers (timeUp, and
// cancelSent's), and a cluster (which keeps its tasks in a map of its
// own). A call with none of them, as most calls of a busy pool are, is
// used again: ApplyAsync then allocates only its AsyncResult, and the
// collector, which scanned the calls in flight and swept them after,
// runs a fifth as often in the async benchmark.
func (c *applyCall[R]) recycle() {
	if c.flags.has(flagWatched) || c.timeout != 0 || c.calls == nil {
		return
	}
	calls := c.calls
	*c = applyCall[R]{}
	calls.Put(c)
}

// errMapSettled is the error of a chunk not encoded because its Map was
// over (failed or cancelled) by the time a worker took it.
var errMapSettled = errors.New("mp: the Map is over")

// defaultChunksize is Python's: spread the items over four chunks per
// worker.
func defaultChunksize(n, workers int) int {
	c, extra := n/(workers*4), n%(workers*4)
	if extra > 0 {
		c++
	}
	return max(c, 1)
}

// Map runs f on every item in pool, in chunks of chunksize items (0: as
// Python chooses, but, for items of a variable-size type, with no more
// than about 4 MiB of encoded items per chunk: see chunkEnds), and returns
// the results in order. The first error stops it, and the chunks not yet
// started are dropped; ctx's end cancels it: the chunks not started are
// dropped and those running are stopped as Pool describes. Options report
// its progress: see [WithProgress] and [WithProgressBar].
//
// Map returns ctx.Err() as soon as ctx ends, also while it is still
// submitting its chunks (a pool on a cluster publishes them one by one,
// and a publication may wait for a slow or stopped server): the chunks
// not submitted by then are never submitted and never run, nor does any
// result reach it afterwards. Once it has returned, it reads items no
// more, but for a chunk of items of a fixed-size type that a local pool
// was writing to a worker from items' own memory, which may go on until
// that worker has read it (the chunk is then skipped or stopped).
//
// Each chunk is encoded only when a worker takes it, into memory the pool
// uses again for the next: beside items and the results, a Map holds
// about a chunk's encoding per worker at a time.
func (f *Func[A, R]) Map(ctx context.Context, pool *Pool, items []A, chunksize int, opts ...MapOption) ([]R, error) {
	// items cannot change while Map runs, so chunks are sent, or encoded
	// as they are sent, from where they are.
	res, halt := f.mapAsync(ctx, pool, items, chunksize, false, opts)
	out, err := res.Get(ctx)
	if err != nil {
		halt(err) // ctx may be done before the AfterFunc of mapAsync has run
	}
	return out, err
}

// MapAsync is Map without waiting; ctx's end cancels it, as it does Map
// (see Pool for what a cancelled task may still do). Options report its
// progress: see [WithProgress] and [WithProgressBar].
//
// The caller may change items, and any memory they refer to, as soon as
// MapAsync returns. Items of a fixed-size type (numbers, arrays and
// structs of them) are copied whole before MapAsync returns. Other items
// made of numbers, bools and strings only are copied, and their chunks
// encoded as workers take them, as Map does; items that refer to memory
// that may change (byte slices, maps, pointers, ...) are encoded before
// MapAsync returns, so that their encoding is held until their chunks are
// sent.
func (f *Func[A, R]) MapAsync(ctx context.Context, pool *Pool, items []A, chunksize int, opts ...MapOption) *AsyncResult[[]R] {
	res, _ := f.mapAsync(ctx, pool, items, chunksize, true, opts)
	return res
}

// mapAsync is MapAsync; copyItems says whether the caller may change
// items before the result is ready, so that they must be copied. It also
// returns halt, which settles the Map with err if it is not settled yet,
// and returns once no chunk is being encoded from items, nor will be: a
// Map that returns early leaves items to its caller (but for a chunk of
// raw items being written to a local worker from items themselves: see
// Map).
func (f *Func[A, R]) mapAsync(ctx context.Context, pool *Pool, items []A, chunksize int, copyItems bool, opts []MapOption) (_ *AsyncResult[[]R], halt func(error)) {
	res := newAsyncResult[[]R]()
	halt = func(error) {}
	out := make([]R, len(items))
	// Filled by the workers' results as they come: map its pages in at
	// once rather than one fault at a time (see internal/prefault).
	prefault.Bytes(codec.ChunkInto(out))
	if len(items) == 0 {
		res.resolve(out, nil)
		return res, halt
	}
	ends := chunkEnds(items, chunksize, pool.Processes(), pool.chunkBytes())
	raw := codec.RawChunks[A]()
	lazy := !raw && (!copyItems || codec.InertItems[A]())
	if lazy && copyItems {
		items = slices.Clone(items)
	}
	var (
		mu      sync.Mutex
		left    = len(ends)
		doneN   int
		tasks   = make([]*task, 0, len(ends))
		settled bool
		prog    *progressReport
		// Held for reading while a chunk is encoded from items; stopped
		// (under it) once the Map is settled: items are no longer read.
		reading sync.RWMutex
		stopped bool
	)
	settle := func(err error) {
		// Called with mu held.
		if settled {
			return
		}
		settled = true
		for _, t := range tasks {
			t.flags.set(flagCanceled)
		}
		reading.Lock()
		stopped = true
		reading.Unlock()
		prog.finish()
		if err != nil {
			res.resolve(nil, err)
		} else {
			res.resolve(out, nil)
		}
	}
	for i, ce := range ends {
		off, end := 0, ce.end
		if i > 0 {
			off = ends[i-1].end
		}
		chunk := items[off:end]
		t := &task{target: f.name, more: &taskMore{chunk: true, into: codec.ChunkInto(out[off:end])}, finish: finishFunc(func(enc []byte, err error) {
			if err == nil {
				if err = codec.DecodeChunk(enc, out[off:end]); err != nil {
					err = fmt.Errorf("mp: decode results: %w", err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if settled {
				return
			}
			if err != nil {
				settle(err)
				return
			}
			left--
			doneN += end - off
			prog.report(doneN, len(items))
			if left == 0 {
				settle(nil)
			}
		})}
		var err error
		switch {
		case raw && !copyItems && pool.cluster == nil:
			t.arg = codec.AsBytes(chunk)
		case raw && !copyItems || lazy:
			// On a cluster, raw items are copied from items as the chunk is
			// published, as encoded ones are, under reading: the session
			// may go on publishing after a Map cancelled during its
			// submission returned (see clusterPool.submit), and must then
			// neither read items nor publish the chunk.
			t.more.argSize = ce.size
			t.more.encode = func(buf *bytes.Buffer) error {
				reading.RLock()
				defer reading.RUnlock()
				if stopped {
					return errMapSettled // its finish goes unheard
				}
				if raw {
					buf.Write(codec.AsBytes(chunk))
					return nil
				}
				return codec.EncodeArgTo(buf, chunk)
			}
		default:
			t.arg, err = codec.EncodeChunk(chunk)
		}
		if err != nil {
			res.resolve(nil, err)
			return res, halt
		}
		tasks = append(tasks, t)
	}
	prog = newProgress(pool, f.name, len(items), opts)
	halt = func(err error) {
		mu.Lock()
		settle(err)
		mu.Unlock()
		if ctx.Err() != nil {
			// Cancelled: stop the chunks that workers hold too.
			pool.cancelTasks(tasks, err)
		}
	}
	// The Map's own watch of ctx (below) cancels its tasks once they are
	// submitted; ctx's end during their submission cancels them there.
	if err := pool.submitTasks(ctx, false, tasks); err != nil {
		halt(err)
		return res, halt
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { halt(ctx.Err()) })
		go func() { <-res.Done(); stop() }()
	}
	return res, halt
}

// Imap runs f on the items of seq in pool, chunksize items per task (0 or
// less: 1), and yields the results in order as they come, one per item. It
// reads seq lazily, keeping a bounded number of chunks in flight.
//
// An item that fails yields (zero, its error) and the loop goes on with
// the next, as Python's imap does when next() is called again. A chunk
// stops at its first failing item, so with chunksize above 1 every item of
// a failed chunk yields that error (those before it ran; their results
// are lost).
//
// ctx's end cancels the chunks in flight (see Pool), and the loop yields
// (zero, ctx.Err()) once and ends. The results that reached the loop
// before it saw ctx's end are yielded first (for Imap only those whose
// turn has come: a chunk done after an earlier one still running is not
// yielded); if they are the last, seq having no more items, the loop
// ends with them, without ctx.Err(). The items of the chunks cancelled
// yield nothing, not even ctx.Err(). A target registered with
// RegisterCtx that returns an error of its own, context.Canceled say,
// fails its chunk as any error does: only the end of the loop's ctx ends
// the loop.
//
// So does a pool that stops, with its error. Closed (Close), it runs the
// chunks it was given: a loop that has chunks left to submit yields
// ErrPoolClosed once, when it next submits, and ends (the chunks in
// flight are then dropped as below); one that has submitted all its
// chunks yields them all. Terminated (Terminate), or (this process's
// pool) broken (its Initializer failed, or a worker could not be
// started), it fails the chunks in flight: the loop yields
// ErrPoolTerminated, or the error that broke it, once (or ErrPoolClosed,
// if it submits to the terminated pool first) and ends.
//
// The loop may stop early (break): the chunks it has in flight (up to
// 2*Processes+2) are dropped, and their results go unheard. Of a target
// registered with RegisterCtx they are cancelled as by ctx's end (see
// Pool): those not started never start, those running have their ctx
// cancelled. Of another target none is stopped, as stopping it would
// kill its worker: those not started never start, and those running run
// to their end. In this process's pool, a chunk that a worker already
// holds queued behind its running one (see Pool) runs too.
// On a cluster, a chunk still queued in the cluster's stream is purged
// and never runs, and a chunk that a worker took before the purge runs
// to its end unless that worker heard the drop before starting it (see
// package cluster); the pool's Close does not wait for them.
//
// Options report its progress: see [WithProgress] and [WithProgressBar].
func (f *Func[A, R]) Imap(ctx context.Context, pool *Pool, seq iter.Seq[A], chunksize int, opts ...MapOption) iter.Seq2[R, error] {
	return f.imap(ctx, pool, seq, chunksize, true, opts)
}

// ImapUnordered is Imap yielding results in the order they finish.
func (f *Func[A, R]) ImapUnordered(ctx context.Context, pool *Pool, seq iter.Seq[A], chunksize int, opts ...MapOption) iter.Seq2[R, error] {
	return f.imap(ctx, pool, seq, chunksize, false, opts)
}

type chunkOut[R any] struct {
	seq  int
	vals []R
	err  error
	// ends says that err is not the chunk's own but the end of the loop:
	// the loop's ctx ended (err is errImapCtxEnded) or the pool stopped
	// (see Pool.stoppedBy). The loop then yields err once and ends.
	ends bool
}

func (f *Func[A, R]) imap(ctx context.Context, pool *Pool, seq iter.Seq[A], chunksize int, ordered bool, opts []MapOption) iter.Seq2[R, error] {
	if chunksize <= 0 {
		chunksize = 1
	}
	return func(yield func(R, error) bool) {
		window := 2*pool.Processes() + 2
		results := make(chan chunkOut[R], window)
		var mu sync.Mutex           // inflight, which ctx's end reads too
		inflight := map[int]*task{} // by sequence number, until received
		inFlight := func() []*task {
			mu.Lock()
			defer mu.Unlock()
			return slices.Collect(maps.Values(inflight))
		}
		defer func() {
			// The loop is over: what is left is not wanted. Their finish
			// sends to results, which has room for every chunk in flight.
			left := inFlight()
			if seesCtx(f.name) {
				pool.cancelTasks(left, errImapStopped)
				return
			}
			// Not stopped where they run: the target does not see its
			// ctx, and stopping it would kill its worker process.
			pool.dropTasks(left, errImapStopped)
		}()
		if ctx.Done() != nil {
			// One watch of ctx for the loop, whose end cancels the chunks
			// in flight together: a pool on a cluster then stops none of
			// them before the others are out of the workers' reach (see
			// Pool.cancelTasks). They fail with errImapCtxEnded, which
			// tells them from a chunk whose target returned ctx.Err()
			// of its own ctx.
			defer context.AfterFunc(ctx, func() { pool.cancelTasks(inFlight(), errImapCtxEnded) })()
		}
		next, stop := iter.Pull(seq)
		defer stop()
		sent, exhausted := 0, false
		pending := map[int]chunkOut[R]{}
		want := 0
		var zero R
		prog := newProgress(nil, f.name, -1, opts)
		defer prog.finish()
		doneN := 0
		for {
			// Keep the window full.
			for !exhausted && sent-want < window {
				var chunk []A
				for len(chunk) < chunksize {
					a, ok := next()
					if !ok {
						exhausted = true
						break
					}
					chunk = append(chunk, a)
				}
				if len(chunk) == 0 {
					break
				}
				s, vals := sent, make([]R, len(chunk))
				b, err := codec.EncodeChunk(chunk)
				if err != nil {
					// This chunk's items fail; the next may encode.
					results <- chunkOut[R]{seq: s, vals: vals, err: err}
					sent++
					continue
				}
				t := &task{target: f.name, arg: b, more: &taskMore{chunk: true, into: codec.ChunkInto(vals)}, finish: finishFunc(func(enc []byte, err error) {
					ends := false
					switch {
					case err == nil:
						if err = codec.DecodeChunk(enc, vals); err != nil {
							err = fmt.Errorf("mp: decode results: %w", err)
						}
					case err == errImapCtxEnded:
						// The watch of ctx above cancelled it; no error
						// that a target returns is this one.
						ends = true
					default:
						ends = pool.stoppedBy(err)
					}
					results <- chunkOut[R]{seq: s, vals: vals, err: err, ends: ends}
					if h := testHookImapChunk.Load(); h != nil {
						(*h)()
					}
				})}
				// In flight before it is submitted, so that ctx's end
				// during its submission cancels it with the others.
				mu.Lock()
				inflight[s] = t
				mu.Unlock()
				if err := pool.submitTasks(ctx, false, []*task{t}); err != nil {
					mu.Lock()
					delete(inflight, s)
					mu.Unlock()
					yield(zero, err)
					return
				}
				sent++
			}
			if want == sent && exhausted {
				return
			}
			var c chunkOut[R]
			select {
			case c = <-results: // a chunk in wins over ctx done
			default:
				select {
				case c = <-results:
				case <-ctx.Done():
					yield(zero, ctx.Err())
					return
				}
			}
			mu.Lock()
			delete(inflight, c.seq)
			mu.Unlock()
			if c.ends {
				// Once, whatever the chunks still to come or waiting
				// in pending for an earlier one.
				if c.err == errImapCtxEnded {
					c.err = ctx.Err()
				}
				yield(zero, c.err)
				return
			}
			if c.err == nil {
				doneN += len(c.vals)
				prog.report(doneN, -1)
			}
			if ordered {
				pending[c.seq] = c
				for {
					c, ok := pending[want]
					if !ok {
						break
					}
					delete(pending, want)
					want++
					if !yieldChunk(yield, c) {
						return
					}
				}
			} else {
				want++
				if !yieldChunk(yield, c) {
					return
				}
			}
		}
	}
}

// yieldChunk yields a chunk's results, or its error once per item, and
// reports whether the loop goes on.
func yieldChunk[R any](yield func(R, error) bool, c chunkOut[R]) bool {
	var zero R
	for _, v := range c.vals {
		if c.err != nil {
			v = zero
		}
		if !yield(v, c.err) {
			return false
		}
	}
	return true
}

// testHookImapChunk, if a test sets it, runs in an Imap chunk's finish
// once the chunk's outcome is on its way to the loop: a test waits for
// it to have the loop find the outcome there.
var testHookImapChunk atomic.Pointer[func()]

// errImapCtxEnded cancels the chunks in flight of an Imap whose ctx
// ended: the loop yields ctx.Err() instead, once.
var errImapCtxEnded = errors.New("mp: the Imap's ctx ended")

// stoppedBy reports whether err, the failure of one of p's tasks, is
// p's stop rather than the task's own: p was terminated and err is
// ErrPoolTerminated, or p broke with err (its Initializer failed, or a
// worker could not be started: a local pool's tasks then fail with that
// very error). Terminate (for a pool on a cluster, also the cluster's
// Close: see clusterhook.Config.OnTerminate) and breakPool mark p before they fail its
// tasks, so that a task they fail is never taken for the task's own
// failure (a target's own ErrPoolTerminated that reaches the caller
// after Terminate is taken for the stop, which it then is as well). Not
// to be called with p.mu held.
func (p *Pool) stoppedBy(err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == poolTerminated && errors.Is(err, ErrPoolTerminated) || p.broken != nil && err == p.broken
}

// errImapStopped cancels the chunks of an Imap whose loop ended early;
// nobody sees it.
var errImapStopped = errors.New("mp: the Imap loop stopped")

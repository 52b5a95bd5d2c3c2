//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/ringconn"
)

// stuckCluster is a cluster whose publication of one task (the
// blockAt-th it publishes, counting from 0 over every Submit) blocks
// until release is closed, as a publication to a stream whose server is
// slow or stopped does. Otherwise it keeps the promises of a session
// (see clusterhook.Session) and publishes the tasks in order, but runs
// none of them: a test sees exactly which tasks went out. Terminate
// fails the tasks published and not cancelled, and those it is yet to
// publish.
type stuckCluster struct {
	blockAt int
	blocked chan struct{} // closed once the publication of task blockAt blocks
	release chan struct{}

	mu        sync.Mutex
	seen      int // tasks whose publication started
	published []*clusterhook.Task
	canceled  map[*clusterhook.Task]bool
	submits   int // Submits under way
	done      chan struct{}
	ended     bool
	termErr   error // Terminate's
}

func newStuckCluster(blockAt int) *stuckCluster {
	return &stuckCluster{blockAt: blockAt, blocked: make(chan struct{}), release: make(chan struct{}),
		canceled: map[*clusterhook.Task]bool{}, done: make(chan struct{})}
}

func (c *stuckCluster) OpenPool(clusterhook.Config) (clusterhook.Session, error) { return c, nil }

func (c *stuckCluster) Submit(ts []*clusterhook.Task) error {
	c.mu.Lock()
	c.submits++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.submits--
		c.mu.Unlock()
	}()
	for _, t := range ts {
		c.mu.Lock()
		if c.canceled[t] {
			c.mu.Unlock()
			continue // cancelled before its publication: never published
		}
		n := c.seen
		c.seen++
		c.mu.Unlock()
		if n == c.blockAt {
			close(c.blocked)
			<-c.release
		}
		c.mu.Lock()
		err := c.termErr
		c.mu.Unlock()
		if err != nil {
			t.Finish(nil, err) // as the session fails it: terminated
			continue
		}
		if t.Encode != nil {
			var buf bytes.Buffer
			if err := t.Encode(&buf); err != nil {
				t.Finish(nil, err) // as the session settles it: nothing to send
				continue
			}
		}
		c.mu.Lock()
		c.published = append(c.published, t)
		c.mu.Unlock()
	}
	return nil
}

// Cancel marks t: a t not yet published is never published (the one
// under way is, as a session publishes it and then stops it).
func (c *stuckCluster) Cancel(t *clusterhook.Task) {
	c.mu.Lock()
	c.canceled[t] = true
	c.mu.Unlock()
}

// CancelAll is Cancel of each of ts.
func (c *stuckCluster) CancelAll(ts []*clusterhook.Task) {
	for _, t := range ts {
		c.Cancel(t)
	}
}

// DropAll is CancelAll: it runs no task, so none is stopped.
func (c *stuckCluster) DropAll(ts []*clusterhook.Task) { c.CancelAll(ts) }

func (c *stuckCluster) Slots() int        { return 2 }
func (c *stuckCluster) MaxTaskBytes() int { return 0 }
func (c *stuckCluster) Close()            { c.end() }
func (c *stuckCluster) Terminate(err error) {
	c.mu.Lock()
	c.termErr = err
	var fail []*clusterhook.Task
	for _, t := range c.published {
		if !c.canceled[t] {
			fail = append(fail, t)
		}
	}
	c.mu.Unlock()
	for _, t := range fail {
		t.Finish(nil, err)
	}
	c.end()
}
func (c *stuckCluster) Done() <-chan struct{} {
	return c.done
}

func (c *stuckCluster) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.ended = true
		close(c.done)
	}
}

// state returns the tasks published, and whether a Submit is under way.
func (c *stuckCluster) state() (published []*clusterhook.Task, submitting bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.published), c.submits > 0
}

// TestCallCtxEndsDuringSubmit ends the ctx (cancelled, or past its
// deadline) of each call that gives a pool work while its submission is
// stuck (a cluster's publication that does not return), or terminates
// its pool, and checks that the call returns ctx.Err() (or
// ErrPoolTerminated) at once (within a bound that only proves it did not
// wait for the publication, stuck for good), that no task after the
// stuck one is ever published,
// and that nothing is left running: the submission, once released,
// returns and publishes nothing more, and Join waits for it.
func TestCallCtxEndsDuringSubmit(t *testing.T) {
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	strs := make([]string, 100)
	for i := range strs {
		strs[i] = "item"
	}
	type call func(ctx context.Context, pool *mp.Pool, ex *mp.Executor) error
	cases := []struct {
		name     string
		blockAt  int
		executor bool
		call     call
	}{
		{"Map", 10, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			_, err := double.Map(ctx, pool, items, 1)
			return err
		}},
		{"MapLazyChunks", 10, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			_, err := strLen.Map(ctx, pool, strs, 1)
			return err
		}},
		{"MapAsync", 10, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			_, err := double.MapAsync(ctx, pool, items, 1).Get(context.Background())
			return err
		}},
		{"Imap", 3, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			for _, err := range double.Imap(ctx, pool, slices.Values(items), 1) {
				return err
			}
			return errors.New("Imap yielded nothing")
		}},
		{"ImapUnordered", 3, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			for _, err := range double.ImapUnordered(ctx, pool, slices.Values(items), 1) {
				return err
			}
			return errors.New("ImapUnordered yielded nothing")
		}},
		{"Apply", 0, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			_, err := double.Apply(ctx, pool, 1)
			return err
		}},
		{"ApplyAsync", 0, false, func(ctx context.Context, pool *mp.Pool, _ *mp.Executor) error {
			_, err := double.ApplyAsync(ctx, pool, 1, nil, nil).Get(context.Background())
			return err
		}},
		{"ExecutorSubmit", 0, true, func(ctx context.Context, _ *mp.Pool, ex *mp.Executor) error {
			_, err := double.Submit(ctx, ex, 1).Result(context.Background())
			return err
		}},
		{"SubmitMap", 2, true, func(ctx context.Context, _ *mp.Pool, ex *mp.Executor) error {
			for _, err := range double.SubmitMap(ctx, ex, items, 1) {
				return err
			}
			return errors.New("SubmitMap yielded nothing")
		}},
	}
	for _, tc := range cases {
		for _, end := range []submitEnd{endCancel, endDeadline, endTerminate} {
			if end == endTerminate && tc.executor {
				continue // an Executor has no Terminate
			}
			t.Run(tc.name+"/"+string(end), func(t *testing.T) { checkCtxEndsDuringSubmit(t, tc.blockAt, tc.executor, tc.call, end) })
		}
	}
}

// submitEnd is what ends a call while its submission is stuck.
type submitEnd string

const (
	endCancel    submitEnd = "cancel"    // its ctx is cancelled
	endDeadline  submitEnd = "deadline"  // its ctx reaches its deadline
	endTerminate submitEnd = "terminate" // its pool is terminated: ErrPoolTerminated
)

// checkCtxEndsDuringSubmit is TestCallCtxEndsDuringSubmit for one call:
// its ctx is cancelled, or reaches its deadline, or its pool is
// terminated, while the publication of task blockAt is stuck.
func checkCtxEndsDuringSubmit(t *testing.T, blockAt int, executor bool, call func(context.Context, *mp.Pool, *mp.Executor) error, how submitEnd) {
	fake := newStuckCluster(blockAt)
	opts := mp.PoolOptions{Cluster: fake, Processes: mp.NoLocalWorkers}
	var pool *mp.Pool
	var ex *mp.Executor
	var err error
	if executor {
		ex, err = mp.NewExecutor(opts)
	} else {
		pool, err = mp.NewPool(opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(fake.release)
		}
	}
	defer func() {
		release()
		jctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if ex != nil {
			if err := ex.Shutdown(jctx, mp.ShutdownOptions{}); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		} else {
			pool.Close()
			if err := pool.Join(jctx); err != nil {
				t.Errorf("Join: %v", err)
			}
		}
		if _, submitting := fake.state(); submitting {
			t.Error("a Submit still runs after Join")
		}
	}()

	var ctx context.Context
	var end func()
	want := context.Canceled
	switch how {
	case endDeadline:
		d := &expiringCtx{Context: context.Background(), done: make(chan struct{})}
		ctx, end, want = d, sync.OnceFunc(func() { close(d.done) }), context.DeadlineExceeded
	case endTerminate:
		// A ctx that can end, which the call watches, but does not.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		end, want = func() { pool.Terminate() }, mp.ErrPoolTerminated
	default:
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		end = cancel
	}
	defer end()
	errc := make(chan error, 1)
	go func() { errc <- call(ctx, pool, ex) }()
	select {
	case <-fake.blocked:
	case err := <-errc:
		t.Fatalf("the call returned %v before its submission blocked", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the submission did not reach the task that blocks")
	}
	end()
	select {
	case err := <-errc:
		if !errors.Is(err, want) {
			t.Errorf("the call returned %v, want %v", err, want)
		}
	case <-time.After(3 * time.Second):
		t.Errorf("the call did not return within 3 s of its end (%s): it waits for the stuck submission", how)
		release()
		<-errc
	}
	// The submission goes on once released: nothing after the
	// stuck task may go out.
	release()
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for {
		_, submitting := fake.state()
		if !submitting {
			break
		}
		if wctx.Err() != nil {
			t.Fatal("the stuck Submit did not return once released")
		}
		time.Sleep(time.Millisecond)
	}
	published, _ := fake.state()
	if len(published) > blockAt+1 {
		t.Errorf("%d tasks published, want at most %d (those up to the stuck one)", len(published), blockAt+1)
	}
}

// expiringCtx is a ctx whose deadline passes when the test closes done,
// not at a time: it ends exactly while a submission is stuck.
type expiringCtx struct {
	context.Context
	done chan struct{}
}

func (c *expiringCtx) Done() <-chan struct{} { return c.done }

func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

var strLen = mp.Register("test.mapctx.strLen", func(s string) (int, error) { return len(s), nil })

// bigStep is a poolStep with an argument too large for a worker's ring
// (64 KiB): its sending waits for the worker to read.
type bigStep struct {
	Step poolStep
	Pad  []byte
}

var bigStepFunc = mp.Register("test.mapctx.bigStep", func(s bigStep) (string, error) {
	return runStep(context.Background(), s.Step)
})

// TestApplyCtxEndsWhileWorkerStopped gives a local pool's only worker,
// idle and stopped (SIGSTOP), a call whose argument does not fit in its
// ring, and cancels the call's ctx while the argument waits for the
// worker to read it: Apply returns context.Canceled at once (within a
// bound that only proves it did not wait for the worker, stopped for
// good), and once the worker goes on, the cancelled call never runs: the
// worker skips it and runs the next call.
func TestApplyCtxEndsWhileWorkerStopped(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	bound := ctxTimeout(t, 30*time.Second)
	if _, err := double.Apply(bound, pool, 1); err != nil {
		t.Fatal(err)
	}
	pid := onlyWorkerPid(t, pool)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	continued := false
	cont := func() {
		if !continued {
			continued = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer cont()
	ctx, cancel := context.WithCancel(bound)
	errc := make(chan error, 1)
	go func() {
		_, err := bigStepFunc.Apply(ctx, pool, bigStep{Step: poolStep{Dir: dir, ID: "big"}, Pad: make([]byte, 1<<20)})
		errc <- err
	}()
	// The pool waits for room in the ring, full of the call's argument.
	ring := mp.PoolRingForTest(pool, pid)
	head, tail := ringWord(ring, poolRing, ringHeadWord), ringWord(ring, poolRing, ringTailWord)
	waitFor(t, func() bool { return procState(pid) == 'T' && head.Load()-tail.Load() == ringconn.RingSize })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Apply returned %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("Apply did not return within 3 s of its ctx's end: it waits for the stopped worker to read its argument")
		cont()
		<-errc
	}
	cont()
	// The worker runs its tasks in turn: once the next is done, the
	// cancelled one was skipped or ran.
	if v, err := plainStep.Apply(bound, pool, poolStep{Dir: dir, ID: "next"}); err != nil || v != "done next" {
		t.Fatalf("the next call: %q, %v", v, err)
	}
	if exists(dir, "started-big") {
		t.Error("the cancelled call ran")
	}
}

// refusingCluster is a stuckCluster whose Submit publishes nothing and
// fails, as a session whose stream is gone does.
type refusingCluster struct{ *stuckCluster }

var errRefused = errors.New("the test's cluster refuses every task")

func (c refusingCluster) OpenPool(clusterhook.Config) (clusterhook.Session, error) { return c, nil }
func (refusingCluster) Submit([]*clusterhook.Task) error                           { return errRefused }

// A call that a pool's cluster refuses fails once, with the cluster's
// error, and no longer watches its ctx (the caller, which finishes it
// through deliver, stops the watch: see Pool.submitTasks).
func TestClusterRefusedStopsWatchingCtx(t *testing.T) {
	p, err := mp.NewPool(mp.PoolOptions{Cluster: refusingCluster{newStuckCluster(-1)}, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Join(context.Background())
	defer p.Close()
	ctx := newWatchCtx(t)
	var errs []error
	res := double.ApplyAsync(ctx, p, 1, nil, func(err error) { errs = append(errs, err) })
	if _, err := res.Get(ctxTimeout(t, 10*time.Second)); !errors.Is(err, errRefused) {
		t.Fatalf("Get: %v, want the cluster's error", err)
	}
	ctx.checkStopped(t, "ApplyAsync")
	p.Close()
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 {
		t.Fatalf("errCallback ran %d times, want once", len(errs))
	}
}

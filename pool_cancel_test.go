//go:build linux

package mp_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// A poolStep is a task that records, in files under Dir, that it started
// (started-ID) and, if it sees its ctx cancelled, that it did
// (cancelled-ID). Hang makes it wait (for its ctx, or, with Ignore, for a
// minute) instead of returning at once.
type poolStep struct {
	Dir    string
	ID     string
	Hang   bool
	Ignore bool // sleep a minute, deaf to ctx
}

// mark writes this process's pid to Dir/what-ID, whole or not at all.
func (s poolStep) mark(what string) {
	name := filepath.Join(s.Dir, what+"-"+s.ID)
	if os.WriteFile(name+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o644) == nil {
		os.Rename(name+".tmp", name)
	}
}

func runStep(ctx context.Context, s poolStep) (string, error) {
	s.mark("started")
	if !s.Hang {
		return "done " + s.ID, nil
	}
	if s.Ignore {
		time.Sleep(time.Minute)
		return "", nil
	}
	<-ctx.Done()
	s.mark("cancelled")
	return "", ctx.Err()
}

var (
	ctxStep   = mp.RegisterCtx("test.ctxStep", runStep)
	plainStep = mp.Register("test.plainStep", func(s poolStep) (string, error) { return runStep(context.Background(), s) })
)

// awaitFile waits, within ctx, for dir/name to exist and returns its content.
func awaitFile(t *testing.T, ctx context.Context, dir, name string) string {
	t.Helper()
	for {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return string(b)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s: %v", name, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

func onlyWorkerPid(t *testing.T, pool *mp.Pool) int {
	t.Helper()
	st := pool.Stats()
	if len(st) != 1 {
		t.Fatalf("%d workers, want 1", len(st))
	}
	return st[0].Pid
}

// A task that never returns, cancelled through its ApplyAsync's ctx:
// the caller gets context.Canceled at once, the task's ctx is cancelled in
// the worker, and the worker is killed and replaced once the grace has
// passed; the pool goes on working. A target that does not see its ctx
// has its worker killed at once.
func TestCancelledApplyAsyncFreesWorker(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *mp.Func[poolStep, string]
	}{{"ctx", ctxStep}, {"plain", plainStep}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pool := newPool(t, mp.PoolOptions{Processes: 1, CancelGrace: 300 * time.Millisecond})
			bound := ctxTimeout(t, 20*time.Second)
			ctx, cancel := context.WithCancel(bound)
			res := tc.f.ApplyAsync(ctx, pool, poolStep{Dir: dir, ID: "a", Hang: true, Ignore: true}, nil, nil)
			old := awaitFile(t, bound, dir, "started-a")
			cancel()
			if _, err := res.Get(bound); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled ApplyAsync: %v, want context.Canceled", err)
			}
			// The next task runs on a new worker.
			v, err := tc.f.Apply(bound, pool, poolStep{Dir: dir, ID: "b"})
			if err != nil || v != "done b" {
				t.Fatalf("after the cancel: %q, %v", v, err)
			}
			if now := awaitFile(t, bound, dir, "started-b"); now == old {
				t.Fatalf("the next task ran on the worker still held by the cancelled one (pid %s)", now)
			}
			// Its worker gone, the pool keeps no kill timer of the task.
			if n := mp.PendingKills(pool); n != 0 {
				t.Fatalf("%d kill timers kept after the worker was replaced", n)
			}
		})
	}
}

// A target that sees its ctx and returns once it is cancelled keeps its
// worker.
func TestCancelledApplyAsyncKeepsWorkerThatStops(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1, CancelGrace: time.Minute})
	bound := ctxTimeout(t, 20*time.Second)
	ctx, cancel := context.WithCancel(bound)
	res := ctxStep.ApplyAsync(ctx, pool, poolStep{Dir: dir, ID: "a", Hang: true}, nil, nil)
	pid := awaitFile(t, bound, dir, "started-a")
	cancel()
	if _, err := res.Get(bound); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ApplyAsync: %v, want context.Canceled", err)
	}
	awaitFile(t, bound, dir, "cancelled-a")
	if _, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "b"}); err != nil {
		t.Fatal(err)
	}
	if now := awaitFile(t, bound, dir, "started-b"); now != pid {
		t.Fatalf("worker %s replaced by %s though its task returned within the grace", pid, now)
	}
	// The task answered, the pool keeps no kill timer of it.
	if n := mp.PendingKills(pool); n != 0 {
		t.Fatalf("%d kill timers kept after the cancelled task returned", n)
	}
}

// A task cancelled while it waits in the queue never runs.
func TestCancelledQueuedTaskNeverRuns(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	bound := ctxTimeout(t, 20*time.Second)
	busyCtx, release := context.WithCancel(bound)
	busy := ctxStep.ApplyAsync(busyCtx, pool, poolStep{Dir: dir, ID: "busy", Hang: true}, nil, nil)
	awaitFile(t, bound, dir, "started-busy")
	ctx, cancel := context.WithCancel(bound)
	queued := ctxStep.ApplyAsync(ctx, pool, poolStep{Dir: dir, ID: "queued"}, nil, nil)
	cancel()
	if _, err := queued.Get(bound); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled queued task: %v", err)
	}
	release() // the busy task returns; the worker takes what is queued
	busy.Wait(bound)
	if _, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "after"}); err != nil {
		t.Fatal(err)
	}
	if exists(dir, "started-queued") {
		t.Fatal("a task cancelled in the queue ran")
	}
	// A ctx done before the call: nothing is sent.
	if _, err := ctxStep.Apply(ctx, pool, poolStep{Dir: dir, ID: "late"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a done ctx: %v", err)
	}
	if _, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "after2"}); err != nil {
		t.Fatal(err)
	}
	if exists(dir, "started-late") {
		t.Fatal("a task given with a done ctx ran")
	}
}

// TaskTimeout first cancels the ctx of a target that sees it; one that
// returns then keeps its worker, and its caller gets ErrTaskTimeout.
func TestTaskTimeoutCancelsCtxFirst(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1, TaskTimeout: 200 * time.Millisecond, CancelGrace: time.Minute})
	bound := ctxTimeout(t, 20*time.Second)
	_, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "slow", Hang: true})
	if !errors.Is(err, mp.ErrTaskTimeout) {
		t.Fatalf("timed out task: %v, want ErrTaskTimeout", err)
	}
	pid := awaitFile(t, bound, dir, "cancelled-slow")
	if _, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "next"}); err != nil {
		t.Fatal(err)
	}
	if now := awaitFile(t, bound, dir, "started-next"); now != pid {
		t.Fatalf("worker %s replaced by %s: killed before its task could return", pid, now)
	}
	// One that does not return is killed once the grace has passed.
	pool2 := newPool(t, mp.PoolOptions{Processes: 1, TaskTimeout: 100 * time.Millisecond, CancelGrace: 100 * time.Millisecond})
	if _, err := ctxStep.Apply(bound, pool2, poolStep{Dir: dir, ID: "deaf", Hang: true, Ignore: true}); !errors.Is(err, mp.ErrTaskTimeout) {
		t.Fatalf("timed out task: %v, want ErrTaskTimeout", err)
	}
	deaf := awaitFile(t, bound, dir, "started-deaf")
	if _, err := ctxStep.Apply(bound, pool2, poolStep{Dir: dir, ID: "next2"}); err != nil {
		t.Fatal(err)
	}
	if now := awaitFile(t, bound, dir, "started-next2"); now == deaf {
		t.Fatal("the worker of a task deaf to its ctx was not replaced")
	}
}

// Submit with a done ctx fails at once and runs nothing; cancelling the
// ctx of a running call fails its Future with the ctx's error.
func TestSubmitCancelledCtx(t *testing.T) {
	dir := t.TempDir()
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 1, CancelGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Shutdown(context.Background(), mp.ShutdownOptions{})
	bound := ctxTimeout(t, 20*time.Second)
	done, cancel := context.WithCancel(bound)
	cancel()
	fut := ctxStep.Submit(done, ex, poolStep{Dir: dir, ID: "never"})
	if err := fut.Err(bound); !errors.Is(err, context.Canceled) || fut.Cancelled() {
		t.Fatalf("Submit with a done ctx: %v (cancelled %v)", err, fut.Cancelled())
	}
	ctx, cancel := context.WithCancel(bound)
	running := ctxStep.Submit(ctx, ex, poolStep{Dir: dir, ID: "running", Hang: true})
	awaitFile(t, bound, dir, "started-running")
	cancel()
	if err := running.Err(bound); !errors.Is(err, context.Canceled) {
		t.Fatalf("running call cancelled: %v", err)
	}
	awaitFile(t, bound, dir, "cancelled-running")
	if v, err := ctxStep.Submit(bound, ex, poolStep{Dir: dir, ID: "after"}).Result(bound); err != nil || v != "done after" {
		t.Fatalf("after: %q, %v", v, err)
	}
	if exists(dir, "started-never") {
		t.Fatal("a call submitted with a done ctx ran")
	}
}

// failNegative fails on a negative item.
var failNegative = mp.Register("test.failNegative", func(x int) (int, error) {
	if x < 0 {
		return 0, errors.New("negative")
	}
	return 10 * x, nil
})

// Imap and ImapUnordered yield (zero, err) for a failed item and go on
// with the others.
func TestImapYieldsErrorsAndGoesOn(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 20*time.Second)
	items := []int{1, 2, -1, 3, -2, 4}
	var got []int
	var errs int
	for v, err := range failNegative.Imap(ctx, pool, slices.Values(items), 1) {
		if err != nil {
			errs++
			got = append(got, -1)
			continue
		}
		got = append(got, v)
	}
	if want := []int{10, 20, -1, 30, -1, 40}; !slices.Equal(got, want) || errs != 2 {
		t.Fatalf("Imap yielded %v (%d errors), want %v", got, errs, want)
	}
	n, errs := 0, 0
	for _, err := range failNegative.ImapUnordered(ctx, pool, slices.Values(items), 1) {
		n++
		if err != nil {
			errs++
		}
	}
	if n != len(items) || errs != 2 {
		t.Fatalf("ImapUnordered yielded %d results, %d errors; want 6, 2", n, errs)
	}
	// With chunks of 2 ([1 2] [-1 3] [-2 4]), a failed chunk's items all
	// yield its error.
	got = got[:0]
	for v, err := range failNegative.Imap(ctx, pool, slices.Values(items), 2) {
		if err != nil {
			v = -1
		}
		got = append(got, v)
	}
	if want := []int{10, 20, -1, -1, -1, -1}; !slices.Equal(got, want) {
		t.Fatalf("Imap by 2 yielded %v, want %v", got, want)
	}
}

// Stopping an Imap loop early cancels the ctx of its running chunks.
func TestImapBreakCancelsRunning(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 2, CancelGrace: time.Minute})
	ctx := ctxTimeout(t, 20*time.Second)
	steps := []poolStep{{Dir: dir, ID: "quick"}, {Dir: dir, ID: "hang", Hang: true}}
	for v, err := range ctxStep.Imap(ctx, pool, slices.Values(steps), 1) {
		if err != nil || v != "done quick" {
			t.Fatalf("first result %q, %v", v, err)
		}
		awaitFile(t, ctx, dir, "started-hang")
		break
	}
	awaitFile(t, ctx, dir, "cancelled-hang")
}

// poolOwner starts a pool and gives it a task that waits for its ctx,
// then waits to be killed.
var poolOwner = mp.RegisterProc("test.poolOwner", func(dir string) error {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 1, CancelGrace: time.Minute})
	if err != nil {
		return err
	}
	ctxStep.ApplyAsync(context.Background(), pool, poolStep{Dir: dir, ID: "orphan", Hang: true}, nil, nil)
	time.Sleep(time.Minute)
	return nil
})

// A pool worker's task sees its ctx cancelled when the pool's process
// dies, and the worker exits once the task has returned.
func TestPoolOwnerDeathCancelsTask(t *testing.T) {
	adoptOrphans(t)
	dir := t.TempDir()
	bound := ctxTimeout(t, 20*time.Second)
	owner := start(t, mp.NewProcess(poolOwner, dir))
	pid, err := strconv.Atoi(awaitFile(t, bound, dir, "started-orphan"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		reapWithin(pid, 5*time.Second)
	})
	owner.Kill()
	owner.Join(bound)
	awaitFile(t, bound, dir, "cancelled-orphan")
	if err := reapWithin(pid, 10*time.Second); err != nil {
		t.Fatalf("worker %d after its task returned: %v", pid, err)
	}
}

// Tasks that a worker took ahead, behind a running one, and that are
// cancelled, are skipped by the worker: they never run. However many it
// holds: 300 queued make it hold up to maxPrefetch, more than the 32
// cancel requests its ledger once kept.
func TestCancelledPrefetchedTasksNeverRun(t *testing.T) {
	for _, n := range []int{40, 300} {
		t.Run(strconv.Itoa(n), func(t *testing.T) { testCancelledPrefetched(t, n) })
	}
}

func testCancelledPrefetched(t *testing.T, n int) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	bound := ctxTimeout(t, 20*time.Second)
	// Quick tasks first, so that the worker is known to be quick and is
	// given many tasks at once: again until it is, as on a loaded
	// machine a task of a few microseconds can take longer than the
	// pace of a quick one.
	for first := true; first || !mp.WorkersQuick(pool); first = false {
		if _, err := double.Map(bound, pool, make([]int, 64), 1); err != nil {
			t.Fatal(err)
		}
	}
	busyCtx, release := context.WithCancel(bound)
	busy := ctxStep.ApplyAsync(busyCtx, pool, poolStep{Dir: dir, ID: "busy", Hang: true}, nil, nil)
	awaitFile(t, bound, dir, "started-busy")
	ctx, cancel := context.WithCancel(bound)
	var queued []*mp.AsyncResult[string]
	for i := range n {
		queued = append(queued, ctxStep.ApplyAsync(ctx, pool, poolStep{Dir: dir, ID: strconv.Itoa(i)}, nil, nil))
	}
	// Wait until the worker holds some of them behind the busy one: with
	// 300, more than 32.
	held := 2
	if n > 40 {
		held = 34
	}
	for mp.HeldByWorkers(pool) < held {
		if bound.Err() != nil {
			t.Fatal("the worker took no task ahead")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	for _, r := range queued {
		if _, err := r.Get(bound); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled task: %v", err)
		}
	}
	release()
	busy.Wait(bound)
	if _, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "after"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if exists(dir, "started-"+strconv.Itoa(i)) {
			t.Fatalf("cancelled task %d ran", i)
		}
	}
}

// Cancelling a Map or MapAsync cancels the ctx of its running chunks.
func TestCancelledMapCancelsRunningChunks(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 2, CancelGrace: time.Minute})
	bound := ctxTimeout(t, 20*time.Second)
	for _, async := range []bool{false, true} {
		id := "map" + strconv.FormatBool(async)
		ctx, cancel := context.WithCancel(bound)
		steps := []poolStep{{Dir: dir, ID: id, Hang: true}}
		go func() {
			defer cancel()
			for !exists(dir, "started-"+id) && bound.Err() == nil {
				time.Sleep(time.Millisecond)
			}
		}()
		var err error
		if async {
			_, err = ctxStep.MapAsync(ctx, pool, steps, 1).Get(bound)
		} else {
			_, err = ctxStep.Map(ctx, pool, steps, 1)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Map (async %v): %v", async, err)
		}
		awaitFile(t, bound, dir, "cancelled-"+id)
	}
}

type ctxRunner struct{ Out *mp.Conn }

func (r *ctxRunner) Run() error { return errors.New("Run called instead of RunContext") }

func (r *ctxRunner) RunContext(ctx context.Context) error {
	defer r.Out.Close()
	r.Out.Send(os.Getpid())
	<-ctx.Done()
	return r.Out.Send("cancelled")
}

var _ = mp.RegisterRunner[ctxRunner]("test.ctxRunner")

// A Runner with RunContext sees Terminate as the cancellation of its ctx.
func TestContextRunnerTerminate(t *testing.T) {
	r, w := pipe(t, false)
	p := start(t, mp.NewRunnerProcess(&ctxRunner{Out: w}))
	w.Close()
	recvPid(t, r)
	p.Terminate()
	recvCancelled(t, r)
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("RunContext returned within the grace: %v", err)
	}
}

// watchCountingCtx counts the watches registered on it (context.AfterFunc
// uses this method) that are neither stopped nor fired.
type watchCountingCtx struct {
	context.Context
	live atomic.Int64
}

// Value hides the cancelCtx inside, which context.AfterFunc would use
// instead of the method below.
func (c *watchCountingCtx) Value(any) any { return nil }

func (c *watchCountingCtx) AfterFunc(f func()) func() bool {
	c.live.Add(1)
	var once sync.Once
	done := func() { once.Do(func() { c.live.Add(-1) }) }
	stop := context.AfterFunc(c.Context, func() { done(); f() })
	return func() bool {
		stopped := stop()
		if stopped {
			done()
		}
		return stopped
	}
}

// Work given with a ctx stops watching it once it is done, delivered or
// withdrawn: a long-lived ctx does not collect a watch per call.
func TestCallsStopWatchingCtx(t *testing.T) {
	dir := t.TempDir()
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Shutdown(context.Background(), mp.ShutdownOptions{})
	bound := ctxTimeout(t, 20*time.Second)
	long, stop := context.WithCancel(context.Background()) // outlives the test's checks
	defer stop()
	ctx := &watchCountingCtx{Context: long}
	busyCtx, release := context.WithCancel(bound)
	busy := ctxStep.Submit(busyCtx, ex, poolStep{Dir: dir, ID: "busy", Hang: true})
	awaitFile(t, bound, dir, "started-busy")
	var futs []*mp.Future[string]
	for i := range 10 {
		futs = append(futs, ctxStep.Submit(ctx, ex, poolStep{Dir: dir, ID: strconv.Itoa(i)}))
	}
	for _, f := range futs[:5] {
		if !f.Cancel() {
			t.Fatal("Cancel of a queued call failed")
		}
	}
	release()
	busy.Err(bound)
	for _, f := range futs[5:] {
		if err := f.Err(bound); err != nil {
			t.Fatal(err)
		}
	}
	// An Imap left early, over a target deaf to its ctx: the chunks not
	// sent are withdrawn, the others delivered to nobody.
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	for range failNegative.Imap(ctx, pool, seqOf(50), 1) {
		break
	}
	for ctx.live.Load() != 0 && bound.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if n := ctx.live.Load(); n != 0 {
		t.Fatalf("%d watches of the ctx left", n)
	}
}

// watchCtx is a ctx that records the watches set on it (context.AfterFunc
// uses a ctx's own AfterFunc method), so that a test can see whether a
// watch was stopped, and end it by hand.
type watchCtx struct {
	context.Context
	mu      sync.Mutex
	fires   []func()
	stopped int
}

// Value hides the cancellable ctx inside, which context.AfterFunc would
// otherwise watch in place of this one.
func (c *watchCtx) Value(any) any { return nil }

func (c *watchCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fires = append(c.fires, f)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.stopped++
		return true
	}
}

// newWatchCtx returns a watchCtx that ends with the test.
func newWatchCtx(t *testing.T) *watchCtx {
	parent, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &watchCtx{Context: parent}
}

// checkStopped fails t unless c has watches, each stopped: who set them
// (the call that failed) stopped watching c.
func (c *watchCtx) checkStopped(t *testing.T, who string) {
	t.Helper()
	c.mu.Lock()
	fires, stopped := len(c.fires), c.stopped
	c.mu.Unlock()
	if fires == 0 {
		t.Fatalf("%s set no watch on its ctx: the test no longer sees what it checks", who)
	}
	if stopped != fires {
		t.Fatalf("%d watches of the ctx set, %d stopped after %s failed", fires, stopped, who)
	}
}

// closedPool returns a pool, closed already, that refuses work.
func closedPool(t *testing.T) *mp.Pool {
	p, err := mp.NewPool(mp.PoolOptions{Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	t.Cleanup(func() { p.Join(context.Background()) })
	return p
}

// An ApplyAsync that the pool refuses (closed) fails once, with
// ErrPoolClosed, and stops watching its ctx: the ctx's end afterwards
// does not settle the call a second time. (The watch was left set: the
// ctx's end then ran errCallback again and changed the result's error to
// ctx.Err() under a caller who had read ErrPoolClosed.)
func TestApplyAsyncRefusedStopsWatchingCtx(t *testing.T) {
	ctx := newWatchCtx(t)
	var errs atomic.Int32
	res := double.ApplyAsync(ctx, closedPool(t), 1, nil, func(error) { errs.Add(1) })
	ctx.checkStopped(t, "ApplyAsync")
	if _, err := res.Get(context.Background()); !errors.Is(err, mp.ErrPoolClosed) {
		t.Fatalf("Get: %v, want ErrPoolClosed", err)
	}
	if n := errs.Load(); n != 1 {
		t.Fatalf("errCallback ran %d times, want once", n)
	}
}

// A cluster's task that the worker's local pool refuses (closed, as the
// worker stops) is finished once, with ErrPoolClosed, and its ctx is no
// longer watched. The watch was left set: the ctx's end afterwards (the
// task's cancellation, the worker's stop) finished it a second time,
// and the cluster worker's second outcome then waited for good on a
// channel read once.
func TestLocalPoolRefusedStopsWatchingCtx(t *testing.T) {
	ctx := newWatchCtx(t)
	var finishes []error
	mp.RunOnLocalPool(ctx, closedPool(t), double.Name(), func(_ []byte, err error) { finishes = append(finishes, err) })
	ctx.checkStopped(t, "the local pool's Run")
	if len(finishes) != 1 || !errors.Is(finishes[0], mp.ErrPoolClosed) {
		t.Fatalf("finished with %v, want once with ErrPoolClosed", finishes)
	}
}

// A call that an Executor's pool refuses (broken by its initializer)
// fails with the pool's error and no longer watches its ctx: the watch,
// left set, held the call until the ctx's end.
func TestExecutorRefusedStopsWatchingCtx(t *testing.T) {
	bound := ctxTimeout(t, 20*time.Second)
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 1, Initializer: mp.NewCall(poolInit, "fail")})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Shutdown(context.Background(), mp.ShutdownOptions{})
	if err := double.Submit(bound, ex, 1).Err(bound); err == nil {
		t.Fatal("a call in a pool whose initializer fails succeeded")
	}
	ctx := newWatchCtx(t)
	fut := double.Submit(ctx, ex, 2)
	if err := fut.Err(bound); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("a call the broken pool refused: %v, want the pool's error", err)
	}
	ctx.checkStopped(t, "Submit")
}

// TestQueuedCallsEndedByDeadline: the watch of a call's ctx may run as
// soon as it is registered, on the goroutine of the ctx's timer, with
// nothing ordering it after what the submitting goroutine writes next
// (the task's unwatch and timeout). Calls still queued behind a busy
// worker when their deadline passes are withdrawn by that goroutine;
// it must read neither (the race detector caught applyCall.recycle
// reading unwatch there: a call seen unwatched would be used again while
// its submitter still wrote to it). Under -race, this fails on such a
// read.
func TestQueuedCallsEndedByDeadline(t *testing.T) {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	bound := ctxTimeout(t, 20*time.Second)
	busyCtx, release := context.WithCancel(bound)
	busy := ctxStep.ApplyAsync(busyCtx, pool, poolStep{Dir: dir, ID: "busy", Hang: true}, nil, nil)
	awaitFile(t, bound, dir, "started-busy")
	// Its own timer, not derived from a ctx of this goroutine's.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var queued []*mp.AsyncResult[string]
	for i := range 300 {
		queued = append(queued, ctxStep.ApplyAsync(ctx, pool, poolStep{Dir: dir, ID: strconv.Itoa(i)}, nil, nil))
	}
	for i, r := range queued {
		if _, err := r.Get(bound); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want its deadline's error", i, err)
		}
	}
	release()
	busy.Wait(bound)
	if _, err := ctxStep.Apply(bound, pool, poolStep{Dir: dir, ID: "after"}); err != nil {
		t.Fatal(err)
	}
}

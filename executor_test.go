//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// exJob is a task of the executor's tests. A Gate makes it wait, without a
// time limit the test depends on, until the file Gate exists; Mark, if set,
// is a file it creates when it starts, to tell that it ran.
type exJob struct {
	N    int
	Mode string // "", "error", "die"
	Gate string
	Mark string
}

type exOut struct {
	N   int
	Pid int
}

var exJobFn = mp.Register("test.exec.job", func(j exJob) (exOut, error) {
	if j.Mark != "" {
		os.WriteFile(j.Mark, nil, 0o600)
	}
	for deadline := time.Now().Add(time.Minute); j.Gate != ""; time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(j.Gate); err == nil || time.Now().After(deadline) {
			break
		}
	}
	switch j.Mode {
	case "error":
		return exOut{}, fmt.Errorf("job %d failed", j.N)
	case "die":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	return exOut{N: j.N, Pid: os.Getpid()}, nil
})

var square = mp.Register("test.exec.square", func(x int) (int, error) {
	if x < 0 {
		return 0, fmt.Errorf("negative %d", x)
	}
	return x * x, nil
})

// gates makes gate files in a temporary directory.
type gates struct {
	t   *testing.T
	dir string
}

func newGates(t *testing.T) *gates { return &gates{t, t.TempDir()} }

func (g *gates) path(name string) string { return filepath.Join(g.dir, name) }

func (g *gates) open(name string) {
	if err := os.WriteFile(g.path(name), nil, 0o600); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gates) exists(name string) bool {
	_, err := os.Stat(g.path(name))
	return err == nil
}

func newExecutor(t *testing.T, opts mp.PoolOptions) *mp.Executor {
	t.Helper()
	ex, err := mp.NewExecutor(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ex.Terminate()
		if err := ex.Shutdown(ctxTimeout(t, 20*time.Second), mp.ShutdownOptions{}); err != nil {
			t.Errorf("Shutdown after Terminate: %v", err)
		}
	})
	return ex
}

func TestExecutorSubmitAndResult(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	var futs []*mp.Future[int]
	for i := range 20 {
		futs = append(futs, square.Submit(context.Background(), ex, i))
	}
	for i, f := range futs {
		v, err := f.Result(ctx)
		if err != nil || v != i*i {
			t.Fatalf("future %d = %d, %v", i, v, err)
		}
		if !f.Done() || f.Running() || f.Cancelled() || f.Err(ctx) != nil {
			t.Errorf("future %d done %v running %v cancelled %v", i, f.Done(), f.Running(), f.Cancelled())
		}
		if f.Cancel() {
			t.Errorf("Cancel of finished future %d succeeded", i)
		}
	}
	bad := square.Submit(context.Background(), ex, -3)
	err := bad.Err(ctx)
	var re *mp.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "negative -3") {
		t.Fatalf("failing future: %v", err)
	}
	if !bad.Done() || bad.Cancelled() {
		t.Error("failed future not done, or cancelled")
	}
	if v, err := bad.Result(ctx); err != bad.Err(ctx) || v != 0 {
		t.Errorf("Result of failed future = %d, %v", v, err)
	}
	if n := ex.Processes(); n != 2 {
		t.Errorf("Processes = %d", n)
	}
}

func TestExecutorResultContext(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	g := newGates(t)
	f := exJobFn.Submit(context.Background(), ex, exJob{Gate: g.path("go")})
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Result(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Result with an expired ctx = %v", err)
	}
	if f.Done() {
		t.Fatal("gated future done")
	}
	g.open("go")
	if _, err := f.Result(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// queueBehindGate fills a one-worker executor: a (gated) runs; b, c and d
// wait in the pool's queue (a worker holds one task while the queue is
// short), where they can be cancelled.
func queueBehindGate(t *testing.T, ex *mp.Executor, g *gates) (a, b, c, d *mp.Future[exOut]) {
	t.Helper()
	job := func(n int) exJob {
		return exJob{N: n, Gate: g.path("go"), Mark: g.path(fmt.Sprint("ran-", n))}
	}
	a = exJobFn.Submit(context.Background(), ex, job(1))
	waitFor(t, a.Running)
	b = exJobFn.Submit(context.Background(), ex, job(2))
	c = exJobFn.Submit(context.Background(), ex, job(3))
	d = exJobFn.Submit(context.Background(), ex, job(4))
	waitFor(t, func() bool { return g.exists("ran-1") })
	return a, b, c, d
}

func TestFutureCancelQueued(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	g := newGates(t)
	a, b, c, d := queueBehindGate(t, ex, g)
	if c.Running() || d.Running() || c.Done() {
		t.Fatalf("queued futures: running %v %v, done %v", c.Running(), d.Running(), c.Done())
	}
	if a.Cancel() || b.Running() {
		t.Fatal("Cancel of a future a worker has taken succeeded, or b is not queued")
	}
	called := 0
	c.AddDoneCallback(func(f *mp.Future[exOut]) {
		if f != c {
			t.Error("callback got another future")
		}
		called++
	})
	if !c.Cancel() {
		t.Fatal("Cancel of a queued future failed")
	}
	if called != 1 {
		t.Fatalf("callback of a cancelled future ran %d times during Cancel", called)
	}
	if !c.Cancelled() || !c.Done() || c.Running() || !c.Cancel() {
		t.Fatalf("cancelled future: cancelled %v done %v running %v", c.Cancelled(), c.Done(), c.Running())
	}
	if _, err := c.Result(ctx); !errors.Is(err, mp.ErrCancelled) {
		t.Fatalf("Result of a cancelled future = %v", err)
	}
	// A cancelled future is done but did not fail.
	if done, _, err := mp.WaitFutures(ctx, []*mp.Future[exOut]{c}, mp.FirstException); err != nil || len(done) != 1 {
		t.Fatalf("WaitFutures on a cancelled future = %v, %v", done, err)
	}
	g.open("go")
	for _, f := range []*mp.Future[exOut]{a, b, d} {
		if _, err := f.Result(ctx); err != nil {
			t.Fatal(err)
		}
		if f.Cancelled() {
			t.Error("a future that ran is cancelled")
		}
	}
	if g.exists("ran-3") {
		t.Error("the cancelled call ran")
	}
	if called != 1 {
		t.Errorf("callback ran %d times", called)
	}
}

func TestFutureDoneCallbacks(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	g := newGates(t)
	f := exJobFn.Submit(context.Background(), ex, exJob{N: 5, Gate: g.path("go")})
	var mu sync.Mutex
	var order []string
	got := make(chan int, 2)
	for _, name := range []string{"first", "second"} {
		f.AddDoneCallback(func(f *mp.Future[exOut]) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			o, err := f.Result(context.Background()) // done: does not wait
			if err != nil {
				t.Error(err)
			}
			got <- o.N
		})
	}
	select {
	case <-got:
		t.Fatal("callback ran before the future was done")
	case <-time.After(20 * time.Millisecond):
	}
	g.open("go")
	for range 2 {
		select {
		case n := <-got:
			if n != 5 {
				t.Fatalf("callback saw result %d", n)
			}
		case <-ctx.Done():
			t.Fatal("callbacks did not run")
		}
	}
	mu.Lock()
	if fmt.Sprint(order) != "[first second]" {
		t.Errorf("callbacks ran in order %v", order)
	}
	mu.Unlock()
	// Added after: runs at once, on this goroutine.
	ran := false
	f.AddDoneCallback(func(*mp.Future[exOut]) { ran = true })
	if !ran {
		t.Error("callback added to a done future did not run at once")
	}
}

func TestFutureAsCompletedOrder(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 3})
	ctx := ctxTimeout(t, 30*time.Second)
	g := newGates(t)
	var futs []*mp.Future[exOut]
	for i := range 3 {
		futs = append(futs, exJobFn.Submit(context.Background(), ex, exJob{N: i, Gate: g.path(fmt.Sprint("go-", i))}))
	}
	release := []int{2, 0, 1}
	g.open(fmt.Sprint("go-", release[0]))
	var got []int
	// futs[0] twice: each future comes once.
	for f, err := range mp.AsCompleted(ctx, append(futs, futs[0])...) {
		if err != nil {
			t.Fatal(err)
		}
		o, err := f.Result(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o.N)
		if len(got) < len(release) {
			g.open(fmt.Sprint("go-", release[len(got)]))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(release) {
		t.Fatalf("AsCompleted order %v, want %v", got, release)
	}
	// Done ones come first, in the order given; mixed result types.
	sq := square.Submit(context.Background(), ex, 3)
	if _, err := sq.Result(ctx); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for f, err := range mp.AsCompleted[mp.AnyFuture](ctx, sq, futs[1]) {
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, fmt.Sprintf("%T", f))
	}
	if fmt.Sprint(kinds) != "[*mp.Future[int] *mp.Future[github.com/go-mp/mp_test.exOut]]" {
		t.Errorf("AsCompleted of mixed futures gave %v", kinds)
	}
	// ctx ends before a future is done.
	stuck := exJobFn.Submit(context.Background(), ex, exJob{Gate: g.path("never")})
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	n := 0
	for f, err := range mp.AsCompleted(short, futs[2], stuck) {
		n++
		if n == 1 && (err != nil || f != futs[2]) {
			t.Fatalf("first of AsCompleted = %v, %v", f, err)
		}
		if n == 2 && (!errors.Is(err, context.DeadlineExceeded) || f != nil) {
			t.Fatalf("AsCompleted past its ctx = %v, %v", f, err)
		}
	}
	if n != 2 {
		t.Fatalf("AsCompleted yielded %d times", n)
	}
	// Stopping early is fine.
	for range mp.AsCompleted(ctx, futs[0], stuck) {
		break
	}
	g.open("never")
}

func TestWaitFuturesModes(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	g := newGates(t)
	slow := exJobFn.Submit(context.Background(), ex, exJob{N: 1, Gate: g.path("go")})
	failing := exJobFn.Submit(context.Background(), ex, exJob{N: 2, Mode: "error"})
	futs := []*mp.Future[exOut]{slow, failing}

	done, notDone, err := mp.WaitFutures(ctx, futs, mp.FirstException)
	if err != nil || !slices.Equal(done, []*mp.Future[exOut]{failing}) || !slices.Equal(notDone, []*mp.Future[exOut]{slow}) {
		t.Fatalf("FIRST_EXCEPTION: done %v, not done %v, %v", done, notDone, err)
	}
	if err := failing.Err(ctx); err == nil || !strings.Contains(err.Error(), "job 2 failed") {
		t.Fatalf("failed future's error = %v", err)
	}
	done, notDone, err = mp.WaitFutures(ctx, futs, mp.FirstCompleted)
	if err != nil || len(done) != 1 || len(notDone) != 1 {
		t.Fatalf("FIRST_COMPLETED: done %v, not done %v, %v", done, notDone, err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	done, notDone, err = mp.WaitFutures(short, futs, mp.AllCompleted)
	if !errors.Is(err, context.DeadlineExceeded) || len(done) != 1 || notDone[0] != slow {
		t.Fatalf("ALL_COMPLETED past its ctx: done %v, not done %v, %v", done, notDone, err)
	}
	// FIRST_EXCEPTION without a failure waits for all.
	g.open("go")
	ok1 := exJobFn.Submit(context.Background(), ex, exJob{N: 3, Gate: g.path("go2")})
	ok2 := exJobFn.Submit(context.Background(), ex, exJob{N: 4})
	short2, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	_, notDone, err = mp.WaitFutures(short2, []*mp.Future[exOut]{ok1, ok2}, mp.FirstException)
	if !errors.Is(err, context.DeadlineExceeded) || notDone[0] != ok1 {
		t.Fatalf("FIRST_EXCEPTION without failures returned early: not done %v, %v", notDone, err)
	}
	g.open("go2")
	done, notDone, err = mp.WaitFutures(ctx, []*mp.Future[exOut]{ok1, ok2, ok1}, mp.FirstException)
	if err != nil || !slices.Equal(done, []*mp.Future[exOut]{ok1, ok2}) || len(notDone) != 0 {
		t.Fatalf("FIRST_EXCEPTION without failures: done %v, not done %v, %v", done, notDone, err)
	}
	anyDone, anyNotDone, err := mp.WaitFutures(ctx, []mp.AnyFuture{slow, failing, square.Submit(context.Background(), ex, 2)}, mp.AllCompleted)
	if err != nil || len(anyDone) != 3 || len(anyNotDone) != 0 {
		t.Fatalf("ALL_COMPLETED: done %v, not done %v, %v", anyDone, anyNotDone, err)
	}
	if _, _, err := mp.WaitFutures(ctx, futs, mp.WaitMode(7)); err == nil {
		t.Error("WaitFutures with a bad mode succeeded")
	}
	if done, notDone, err := mp.WaitFutures[*mp.Future[int]](ctx, nil, mp.AllCompleted); err != nil || done != nil || notDone != nil {
		t.Errorf("WaitFutures of nothing = %v, %v, %v", done, notDone, err)
	}
}

func TestExecutorShutdownCancelsQueued(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	g := newGates(t)
	a, b, c, d := queueBehindGate(t, ex, g)
	// The gate is closed: Shutdown must not wait for a.
	returned := make(chan error, 1)
	go func() { returned <- ex.Shutdown(ctx, mp.ShutdownOptions{NoWait: true, CancelFutures: true}) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown(wait=false) did not return")
	}
	if !b.Cancelled() || !c.Cancelled() || !d.Cancelled() || a.Cancelled() {
		t.Fatalf("cancelled after Shutdown: %v %v %v %v", a.Cancelled(), b.Cancelled(), c.Cancelled(), d.Cancelled())
	}
	if _, err := square.Submit(context.Background(), ex, 2).Result(ctx); !errors.Is(err, mp.ErrExecutorShutdown) {
		t.Fatalf("Submit after Shutdown = %v", err)
	}
	for _, err := range square.SubmitMap(ctx, ex, []int{1, 2}, 1) {
		if !errors.Is(err, mp.ErrExecutorShutdown) {
			t.Fatalf("SubmitMap after Shutdown = %v", err)
		}
		break
	}
	g.open("go")
	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		t.Fatal(err)
	}
	if !a.Done() || !b.Done() {
		t.Fatal("Shutdown(wait) returned with a future not done")
	}
	if _, err := a.Result(ctx); err != nil {
		t.Fatal(err)
	}
	if g.exists("ran-2") || g.exists("ran-3") || g.exists("ran-4") {
		t.Error("a cancelled call ran")
	}
}

func TestExecutorShutdownWaitContext(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	g := newGates(t)
	f := exJobFn.Submit(context.Background(), ex, exJob{Gate: g.path("go")})
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ex.Shutdown(short, mp.ShutdownOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown(wait) past its ctx = %v", err)
	}
	g.open("go")
	ctx := ctxTimeout(t, 30*time.Second)
	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Result(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExecutorTerminate(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	g := newGates(t)
	a, b, c, d := queueBehindGate(t, ex, g)
	if !c.Cancel() {
		t.Fatal("Cancel of a queued future failed")
	}
	ex.Terminate()
	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, f := range []*mp.Future[exOut]{a, b, d} {
		if _, err := f.Result(ctx); !errors.Is(err, mp.ErrPoolTerminated) {
			t.Errorf("future %d after Terminate = %v", i, err)
		}
	}
	if _, err := c.Result(ctx); !errors.Is(err, mp.ErrCancelled) {
		t.Errorf("cancelled future after Terminate = %v", err)
	}
	if _, err := square.Submit(context.Background(), ex, 1).Result(ctx); !errors.Is(err, mp.ErrExecutorShutdown) {
		t.Errorf("Submit after Terminate = %v", err)
	}
}

func TestExecutorWorkerKilled(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	dying := exJobFn.Submit(context.Background(), ex, exJob{Mode: "die"})
	var others []*mp.Future[int]
	for i := range 10 {
		others = append(others, square.Submit(context.Background(), ex, i))
	}
	err := dying.Err(ctx)
	var wl *mp.WorkerLostError
	if !errors.Is(err, mp.ErrWorkerLost) || !errors.As(err, &wl) || wl.ExitCode != -9 {
		t.Fatalf("future whose worker was killed: %v", err)
	}
	for i, f := range others {
		if v, err := f.Result(ctx); err != nil || v != i*i {
			t.Fatalf("other future %d = %d, %v", i, v, err)
		}
	}
	// The executor goes on with a new worker.
	if v, err := square.Submit(context.Background(), ex, 9).Result(ctx); err != nil || v != 81 {
		t.Fatalf("Submit after a worker loss = %d, %v", v, err)
	}
	// Workers start on demand: the lost one is replaced when work needs it.
	if n := len(ex.Stats()); n < 1 || n > 2 {
		t.Fatalf("%d workers after a loss", n)
	}
}

func TestSubmitMap(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	for _, cs := range []int{1, 7, 1000} {
		var got []int
		for v, err := range square.SubmitMap(ctx, ex, items, cs) {
			if err != nil {
				t.Fatalf("chunksize %d: %v", cs, err)
			}
			got = append(got, v)
		}
		if len(got) != len(items) {
			t.Fatalf("chunksize %d: %d results", cs, len(got))
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("chunksize %d: result %d = %d (not in order)", cs, i, v)
			}
		}
	}
	// The first error ends it, after the results before it.
	n := 0
	var last error
	for _, err := range square.SubmitMap(ctx, ex, []int{1, 2, -3, 4}, 1) {
		n++
		last = err
	}
	if n != 3 || last == nil || !strings.Contains(last.Error(), "negative -3") {
		t.Fatalf("SubmitMap with a failing item: %d yields, last %v", n, last)
	}
	// Stopping early leaves the executor usable.
	for range square.SubmitMap(ctx, ex, items, 1) {
		break
	}
	if v, err := square.Submit(context.Background(), ex, 5).Result(ctx); err != nil || v != 25 {
		t.Fatalf("Submit after an abandoned SubmitMap = %d, %v", v, err)
	}
	for range square.SubmitMap(ctx, ex, nil, 1) {
		t.Fatal("SubmitMap of nothing yielded")
	}
}

// Issue 10 point 19: a chunksize below 1 is refused with a typed error, as
// Python raises ValueError; nothing is submitted.
func TestSubmitMapRefusesBadChunksize(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	for _, cs := range []int{0, -1} {
		n := 0
		for v, err := range square.SubmitMap(ctx, ex, []int{1, 2, 3}, cs) {
			n++
			if !errors.Is(err, mp.ErrInvalidChunksize) || v != 0 {
				t.Errorf("chunksize %d: yielded %d, %v", cs, v, err)
			}
		}
		if n != 1 {
			t.Errorf("chunksize %d: %d yields, want the error alone", cs, n)
		}
	}
	if st := ex.Stats(); len(st) != 0 {
		t.Errorf("workers started for refused work: %+v", st)
	}
}

// Issue 10 point 19: an Executor starts its workers on demand, as Python's
// does since 3.9: one task, one worker; more only when tasks wait with no
// worker free, never more than Processes.
func TestExecutorStartsWorkersOnDemand(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 4})
	ctx := ctxTimeout(t, 30*time.Second)
	if st := ex.Stats(); len(st) != 0 {
		t.Fatalf("workers before any task: %+v", st)
	}
	for i := range 5 {
		if v, err := square.Submit(context.Background(), ex, i).Result(ctx); err != nil || v != i*i {
			t.Fatalf("Result = %d, %v", v, err)
		}
		if st := ex.Stats(); len(st) != 1 {
			t.Fatalf("after %d tasks one at a time: %d workers", i+1, len(st))
		}
	}
	// Six tasks held at a gate: the free worker takes one, and each of
	// the others starts a worker, up to four.
	g := newGates(t)
	var futs []*mp.Future[exOut]
	for i := range 6 {
		futs = append(futs, exJobFn.Submit(context.Background(), ex, exJob{N: i, Gate: g.path("go")}))
	}
	waitFor(t, func() bool { return len(ex.Stats()) == 4 })
	g.open("go")
	for i, f := range futs {
		if o, err := f.Result(ctx); err != nil || o.N != i {
			t.Fatalf("gated task %d = %+v, %v", i, o, err)
		}
	}
	if st := ex.Stats(); len(st) != 4 {
		t.Fatalf("%d workers, want 4 at most", len(st))
	}
}

func TestExecutorMaxTasksPerChild(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1, MaxTasksPerChild: 2})
	ctx := ctxTimeout(t, 60*time.Second)
	jobs := make([]exJob, 5)
	pids := map[int]int{}
	for o, err := range exJobFn.SubmitMap(ctx, ex, jobs, 1) {
		if err != nil {
			t.Fatal(err)
		}
		pids[o.Pid]++
	}
	if len(pids) != 3 {
		t.Errorf("5 calls, at most 2 per worker, ran in %d workers: %v", len(pids), pids)
	}
	for pid, n := range pids {
		if n > 2 {
			t.Errorf("worker %d ran %d calls", pid, n)
		}
	}
}

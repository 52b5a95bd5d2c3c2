//go:build linux

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
)

// envDir is where the test targets record what they do (lines of
// "what id pid ppid"), appended by every process.
const envDir = "MPTEST_CLUSTER_DIR"

func record(what string, id int) {
	f, err := os.OpenFile(filepath.Join(os.Getenv(envDir), "log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%s %d %d %d\n", what, id, os.Getpid(), os.Getppid())
	f.Close()
}

// records returns the lines recorded in dir.
func records(t *testing.T, dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

func count(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

var errBoom = errors.New("cluster test: boom")

func init() { mp.RegisterError("cluster.test.boom", errBoom) }

var (
	fail = mp.Register("cluster.test.fail", func(x int) (int, error) {
		if x == 1 {
			panic("kaboom")
		}
		return 0, fmt.Errorf("item %d: %w", x, errBoom)
	})
	// sleepy sleeps for d ms, or until its ctx is cancelled.
	sleepy = mp.RegisterCtx("cluster.test.sleep", func(ctx context.Context, a [2]int) (int, error) {
		id, d := a[0], time.Duration(a[1])*time.Millisecond
		record("start", id)
		select {
		case <-time.After(d):
			record("end", id)
			return id, nil
		case <-ctx.Done():
			record("cancel", id)
			return 0, ctx.Err()
		}
	})
	// die ends its worker process at each attempt.
	die = mp.Register("cluster.test.die", func(id int) (int, error) {
		record("die", id)
		os.Exit(3)
		return 0, nil
	})
	// marked doubles; the first item of each chunk of 500 says where it
	// runs and takes 50 ms, so that the chunk is seen running.
	marked = mp.Register("cluster.test.marked", func(x int) (int, error) {
		if x%500 == 0 {
			record("chunk", x)
			time.Sleep(50 * time.Millisecond)
		}
		return 2 * x, nil
	})
)

// localWorkerPool opens a pool on c with one local worker, which the
// test closes.
func localWorkerPool(t *testing.T, c *Cluster) *mp.Pool {
	t.Helper()
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(t, pool) })
	return pool
}

// applyDoubles calls double on 0..n-1, one call at a time, and checks
// each result.
func applyDoubles(t *testing.T, ctx context.Context, pool *mp.Pool, n int) {
	t.Helper()
	for i := range n {
		if v, err := double.Apply(ctx, pool, i); err != nil || v != 2*i {
			t.Fatalf("call %d: got %v, %v", i, v, err)
		}
	}
}

// submitOnly opens a submit-only pool on c that the test closes.
func submitOnly(t *testing.T, c *Cluster, o mp.PoolOptions) *mp.Pool {
	t.Helper()
	o.Cluster, o.Processes = c, mp.NoLocalWorkers
	pool, err := mp.NewPool(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(t, pool) })
	return pool
}

// A returned error, a panic and a timeout fail their item as locally,
// each run once.
func TestErrorMapping(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{TaskTimeout: 500 * time.Millisecond})
	startWorker(t, c, "2", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 60*time.Second)

	_, err := fail.Apply(ctx, pool, 1)
	var re *mp.RemoteError
	if !errors.As(err, &re) || !re.Panic || !strings.Contains(re.Message, "kaboom") {
		t.Errorf("panic: got %v", err)
	}
	_, err = fail.Apply(ctx, pool, 2)
	if !errors.As(err, &re) || re.Panic || !errors.Is(err, errBoom) {
		t.Errorf("error: got %v, want a RemoteError matching errBoom", err)
	}
	_, err = sleepy.Apply(ctx, pool, [2]int{7, 20000})
	if !errors.Is(err, mp.ErrTaskTimeout) {
		t.Errorf("timeout: got %v, want ErrTaskTimeout", err)
	}
	if n := count(records(t, dir), "start_7_"); n != 1 {
		t.Errorf("the timed-out task started %d times, want 1", n)
	}
}

// A task whose worker process dies at every attempt fails with
// ErrWorkerLost after MaxAttempts attempts.
func TestWorkerLostAfterMaxAttempts(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{MaxAttempts: 3})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 60*time.Second)
	_, err := die.Apply(ctx, pool, 5)
	if !errors.Is(err, mp.ErrWorkerLost) {
		t.Fatalf("got %v, want ErrWorkerLost", err)
	}
	if n := count(records(t, dir), "die_5_"); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

// Tasks longer than the ack wait are kept by their worker's progress
// reports: none runs twice.
func TestSlowTasksNotRunTwice(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{AckWait: time.Second})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "2", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 60*time.Second)
	items := [][2]int{{1, 2500}, {2, 2500}, {3, 2500}, {4, 2500}}
	out, err := sleepy.Map(ctx, pool, items, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != "[1 2 3 4]" {
		t.Errorf("got %v", out)
	}
	lines := records(t, dir)
	for id := 1; id <= 4; id++ {
		if n := count(lines, fmt.Sprintf("start_%d_", id)); n != 1 {
			t.Errorf("task %d started %d times", id, n)
		}
	}
}

// A Map of 100 000 items over 2 remote workers, one SIGKILLed while it
// runs a chunk: every result comes, once, in order.
func TestKillWorkerMidMap(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{AckWait: 2 * time.Second})
	pool := submitOnly(t, c, mp.PoolOptions{})
	a := startWorker(t, c, "2", envDir+"="+dir)
	startWorker(t, c, "2", envDir+"="+dir)
	awaitWorkers(t, c, 2)
	ctx := testCtx(t, 120*time.Second)
	items := make([]int, 100000)
	for i := range items {
		items[i] = i
	}
	res := marked.MapAsync(ctx, pool, items, 500)
	// Once a local worker of a has recorded a chunk (it then runs it for
	// 50 ms), kill a.
	mark := fmt.Sprintf("_%d", a.cmd.Process.Pid)
	for !containsSuffix(records(t, dir), mark) {
		if ctx.Err() != nil || res.Ready() {
			t.Fatal("worker a took no chunk")
		}
		time.Sleep(2 * time.Millisecond)
	}
	a.cmd.Process.Kill()
	<-a.done
	out, err := res.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != 2*i {
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	chunks := map[string]int{}
	for _, l := range records(t, dir) {
		if strings.HasPrefix(l, "chunk_") {
			chunks[strings.Split(l, "_")[1]]++
		}
	}
	if len(chunks) != 200 {
		t.Errorf("%d chunks ran, want 200", len(chunks))
	}
}

// awaitStarts waits, 30 s at most, until n tasks have started.
func awaitStarts(t *testing.T, dir string, n int) {
	t.Helper()
	bound := testCtx(t, 30*time.Second)
	for count(records(t, dir), "start_") < n {
		if bound.Err() != nil {
			t.Fatalf("%d tasks did not start: %v", n, records(t, dir))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func containsSuffix(lines []string, suffix string) bool {
	for _, l := range lines {
		if strings.HasSuffix(l, suffix) {
			return true
		}
	}
	return false
}

// Cancelling a Map's ctx purges its queued tasks, which never run, and
// cancels those running.
func TestCancelMidMap(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "2", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	items := make([][2]int, 20)
	for i := range items {
		items[i] = [2]int{i, 20000}
	}
	res := sleepy.MapAsync(ctx, pool, items, 1)
	awaitStarts(t, dir, 2)
	cancel()
	if _, err := res.Get(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	awaitStopped(t, c, dir, 2)
}

// hookedCluster opens its pools on c, with sessions that call
// beforeSubmit with each job's tasks before they are submitted, and tell
// cancelled the tasks they cancel.
type hookedCluster struct {
	c            *Cluster
	beforeSubmit func(ts []*clusterhook.Task)
	cancelled    chan *clusterhook.Task
}

func (h *hookedCluster) OpenPool(cfg clusterhook.Config) (clusterhook.Session, error) {
	s, err := h.c.OpenPool(cfg)
	if err != nil {
		return nil, err
	}
	return hookedSession{s, h}, nil
}

type hookedSession struct {
	clusterhook.Session
	h *hookedCluster
}

func (s hookedSession) Submit(ts []*clusterhook.Task) error {
	s.h.beforeSubmit(ts)
	return s.Session.Submit(ts)
}

func (s hookedSession) Cancel(t *clusterhook.Task) {
	s.Session.Cancel(t)
	select {
	case s.h.cancelled <- t:
	default: // not awaited
	}
}

// A call whose ctx ends after the pool registered its cancellation but
// before the cluster's session registered its task (the window in the
// pool's submit) never runs: the session drops the task cancelled
// before it. The pool then closes at once: no job is left waiting for
// it (before the fix, the task ran on the worker and Join waited for it).
func TestCancelBeforeSubmitNeverRuns(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	h := &hookedCluster{c: c, cancelled: make(chan *clusterhook.Task, 1)}
	h.beforeSubmit = func(ts []*clusterhook.Task) {
		cancel()
		select {
		case got := <-h.cancelled:
			if got != ts[0] {
				t.Errorf("cancelled %p, submitting %p", got, ts[0])
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the ctx's end did not cancel the task in 30 s")
		}
	}
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: h, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sleepy.Apply(ctx, pool, [2]int{7, 0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	// Join waits for the session's jobs: had the task been sent, for its
	// run on the worker.
	closePool(t, pool)
	if n := count(records(t, dir), "start_"); n != 0 {
		t.Fatalf("the cancelled task ran %d times", n)
	}
	awaitEmptyStream(t, c)
}

// lockedBuffer collects a logger's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A worker built from other code (one more registered target) never takes
// the tasks; the pool warns that no compatible worker is there. A
// compatible worker then runs them.
func TestOtherBuildNeverTakesTasks(t *testing.T) {
	dir := t.TempDir()
	var logs lockedBuffer
	c := startCluster(t, Options{NoWorkerWarning: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	pool := submitOnly(t, c, mp.PoolOptions{})
	// Its heartbeat comes with another fingerprint.
	ch := make(chan *nats.Msg, 64)
	sub, err := c.conn.nc.ChanSubscribe(hbPrefix+c.opts.Pool+".*", ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	startWorker(t, c, "1", envDir+"="+dir, envOtherBuild+"=1")
	var other string
	select {
	case m := <-ch:
		other = m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat from the other build")
	}
	if other == clusterhook.Fingerprint() {
		t.Fatal("the other build has this build's fingerprint")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := sleepy.Apply(ctx, pool, [2]int{1, 0}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	if n := count(records(t, dir), "start_"); n != 0 {
		t.Errorf("the other build ran %d tasks", n)
	}
	if l := logs.String(); !strings.Contains(l, "no compatible worker") || !strings.Contains(l, other) {
		t.Errorf("no warning naming the other build %s: %q", other, l)
	}
	startWorker(t, c, "1", envDir+"="+dir)
	if v, err := sleepy.Apply(testCtx(t, 60*time.Second), pool, [2]int{2, 0}); err != nil || v != 2 {
		t.Fatalf("compatible worker: %v, %v", v, err)
	}
}

// recordID records what with the task's cluster id.
func recordID(what, id string) {
	f, err := os.OpenFile(filepath.Join(os.Getenv(envDir), "ids"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%s %s %d\n", what, id, os.Getppid())
	f.Close()
}

// twice records its task's id and runs for 1.5 s.
var twice = mp.RegisterCtx("cluster.test.twice", func(ctx context.Context, x int) (int, error) {
	recordID("start", TaskID(ctx))
	time.Sleep(1500 * time.Millisecond)
	recordID("end", TaskID(ctx))
	return 2 * x, nil
})

// A task runs twice: its worker is SIGSTOPped while it runs it, past the
// ack wait, so that another worker takes it; the first worker, continued,
// publishes its result too. The caller gets one result, and both runs saw
// the same task id.
func TestRunTwiceOneResult(t *testing.T) {
	var results atomic.Int32 // reaching the pool, directly or from the stream
	testHookDropDirect = func() bool { results.Add(1); return false }
	testHookDropResult = func() bool { results.Add(1); return false }
	t.Cleanup(func() { testHookDropDirect, testHookDropResult = nil, nil })
	dir := t.TempDir()
	c := startCluster(t, Options{AckWait: time.Second})
	pool := submitOnly(t, c, mp.PoolOptions{})
	a := startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 60*time.Second)
	var calls atomic.Int32
	res := twice.ApplyAsync(ctx, pool, 21, func(int) { calls.Add(1) }, nil)
	ids := func() []string {
		b, _ := os.ReadFile(filepath.Join(dir, "ids"))
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	apid := strconv.Itoa(a.cmd.Process.Pid)
	for !strings.HasSuffix(ids()[0], " "+apid) {
		if ctx.Err() != nil {
			t.Fatal("worker a did not start the task")
		}
		time.Sleep(2 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGSTOP)
	startWorker(t, c, "1", envDir+"="+dir)
	if v, err := res.Get(ctx); err != nil || v != 42 {
		t.Fatalf("got %v, %v", v, err)
	}
	a.cmd.Process.Signal(syscall.SIGCONT)
	// a's result comes too (directly: the pool answers it), and is
	// dropped.
	for results.Load() < 2 {
		if ctx.Err() != nil {
			t.Fatalf("the second result never came (%d)", results.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a second callback would show
	if n := calls.Load(); n != 1 {
		t.Errorf("callback called %d times", n)
	}
	lines := ids()
	if len(lines) != 4 {
		t.Fatalf("want 2 starts and 2 ends: %q", lines)
	}
	id := strings.Fields(lines[0])[1]
	for _, l := range lines {
		if f := strings.Fields(l); len(f) != 3 || f[1] != id || id == "" {
			t.Errorf("task ids differ or are empty: %q", lines)
		}
	}
}

// Terminating the pool fails its Map with ErrPoolTerminated, purges the
// queued tasks (none runs) and cancels the running ones.
func TestTerminatePurges(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, c, "2", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	items := make([][2]int, 20)
	for i := range items {
		items[i] = [2]int{i, 20000}
	}
	res := sleepy.MapAsync(testCtx(t, 60*time.Second), pool, items, 1)
	awaitStarts(t, dir, 2)
	pool.Terminate()
	if _, err := res.Get(context.Background()); !errors.Is(err, mp.ErrPoolTerminated) {
		t.Fatalf("got %v", err)
	}
	if err := pool.Join(testCtx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	awaitStopped(t, c, dir, 2)
}

// awaitStopped waits until the running tasks recorded their
// cancellation and the stream of tasks is empty, then checks that no
// other task started: only the running ones ran.
func awaitStopped(t *testing.T, c *Cluster, dir string, running int) {
	t.Helper()
	bound := testCtx(t, 20*time.Second)
	for count(records(t, dir), "cancel_") < running {
		if bound.Err() != nil {
			t.Fatalf("running tasks not cancelled: %v", records(t, dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		info, err := c.conn.tasks.Info(bound)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if bound.Err() != nil {
			t.Fatalf("%d tasks left in the stream", info.State.Msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a queued task that ran would show
	if n := count(records(t, dir), "start_"); n != running {
		t.Errorf("%d tasks started, want the %d running when stopped", n, running)
	}
}

// killParent kills the worker process that runs it (its local pool's
// parent) at each attempt.
var killParent = mp.Register("cluster.test.killparent", func(id int) (int, error) {
	record("killparent", id)
	syscall.Kill(os.Getppid(), syscall.SIGKILL)
	time.Sleep(time.Minute) // the lifeline ends it
	return 0, nil
})

// A task whose worker process (not only its local child) dies at every
// attempt fails with ErrWorkerLost once the stream gave it MaxAttempts
// times, once a worker takes it again.
func TestWorkerProcessLostAfterMaxAttempts(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{AckWait: time.Second, MaxAttempts: 2})
	pool := submitOnly(t, c, mp.PoolOptions{})
	ctx := testCtx(t, 60*time.Second)
	a := startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	res := killParent.ApplyAsync(ctx, pool, 9, nil, nil)
	<-a.done
	b := startWorker(t, c, "1", envDir+"="+dir)
	select {
	case <-b.done:
	case <-ctx.Done():
		t.Fatal("the task did not reach the second worker")
	}
	// The next worker that takes the task fails it without running it.
	startWorker(t, c, "1", envDir+"="+dir)
	_, err := res.Get(ctx)
	if !errors.Is(err, mp.ErrWorkerLost) {
		t.Fatalf("got %v, want ErrWorkerLost", err)
	}
	if n := count(records(t, dir), "killparent_9_"); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	awaitEmptyStream(t, c)
}

// awaitEmptyStream waits, 10 s at most, until the stream of tasks is
// empty.
func awaitEmptyStream(t *testing.T, c *Cluster) {
	t.Helper()
	awaitStreamMsgs(t, c, 0)
}

// envDieOnLast makes a worker die when it takes a task out of attempts.
const envDieOnLast = "MPTEST_CLUSTER_DIE_ON_LAST"

func init() {
	if os.Getenv(envDieOnLast) != "" {
		testHookLastDelivery = func() { os.Exit(9) }
	}
}

// When the worker that takes a task out of attempts dies too, before it
// fails the task, the stream's advisory of the exhausted deliveries fails
// it (once a worker asks for work again), and the pool deletes it from
// the stream.
func TestMaxDeliveriesAdvisory(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{AckWait: time.Second, MaxAttempts: 1})
	pool := submitOnly(t, c, mp.PoolOptions{})
	ctx := testCtx(t, 60*time.Second)
	a := startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	res := killParent.ApplyAsync(ctx, pool, 4, nil, nil)
	<-a.done
	b := startWorker(t, c, "1", envDir+"="+dir, envDieOnLast+"=1")
	select {
	case <-b.done:
	case <-ctx.Done():
		t.Fatal("the task did not reach the second worker")
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 9 {
		t.Fatalf("the second worker exited with %d, not from the hook", code)
	}
	startWorker(t, c, "1", envDir+"="+dir)
	if _, err := res.Get(ctx); !errors.Is(err, mp.ErrWorkerLost) {
		t.Fatalf("got %v, want ErrWorkerLost", err)
	}
	if n := count(records(t, dir), "killparent_4_"); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	awaitEmptyStream(t, c)
}

// A delivered task or a result that the client library drops (as a slow
// consumer after a reconnection) comes again after its ack wait: the
// call still gets its one result.
func TestDroppedMessagesComeAgain(t *testing.T) {
	var tasks, results atomic.Int32
	testHookDropTask = func() bool { return tasks.Add(1) == 1 }
	testHookDropResult = func() bool { return results.Add(1) == 1 }
	testHookDropDirect = func() bool { return true } // the stream's copy only
	t.Cleanup(func() { testHookDropTask, testHookDropResult, testHookDropDirect = nil, nil, nil })
	c := startCluster(t, Options{AckWait: time.Second})
	pool := localWorkerPool(t, c)
	var calls atomic.Int32
	res := double.ApplyAsync(testCtx(t, 60*time.Second), pool, 4, func(int) { calls.Add(1) }, nil)
	if v, err := res.Get(testCtx(t, 60*time.Second)); err != nil || v != 8 {
		t.Fatalf("got %v, %v", v, err)
	}
	if tasks.Load() < 2 || results.Load() < 2 {
		t.Errorf("deliveries: %d of the task, %d of the result; want 2 each", tasks.Load(), results.Load())
	}
	if calls.Load() != 1 {
		t.Errorf("%d callbacks", calls.Load())
	}
}

// A small result reaches its pool directly, ahead of its copy in the
// stream: with every copy from the stream dropped, the call still gets
// its result.
func TestDirectResult(t *testing.T) {
	testHookDropResult = func() bool { return true }
	t.Cleanup(func() { testHookDropResult = nil })
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	if v, err := double.Apply(testCtx(t, 30*time.Second), pool, 5); err != nil || v != 10 {
		t.Fatalf("got %v, %v", v, err)
	}
}

// A small result that its pool takes directly is not stored in the
// stream too: the pool's results consumer delivers none of 20 calls'
// results, and each call gets its one result.
func TestDirectResultNotStored(t *testing.T) {
	var stored atomic.Int32
	testHookDropResult = func() bool { stored.Add(1); return false }
	t.Cleanup(func() { testHookDropResult = nil })
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	ctx := testCtx(t, 30*time.Second)
	applyDoubles(t, ctx, pool, 20)
	awaitEmptyStream(t, c) // every task acknowledged
	rs, err := c.conn.js.Stream(ctx, resultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := rs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := stored.Load(); n != 0 || info.State.LastSeq != 0 {
		t.Errorf("%d results delivered from the stream, %d stored; want none", n, info.State.LastSeq)
	}
}

// A pool answers a result sent directly as it takes it, before its
// caller's callback runs: a callback slower than the worker's wait for
// that answer does not hold up the worker, which would store the result
// in the stream too. The callback waits until the worker has
// acknowledged the task, which it does once answered (or, unanswered,
// once it has stored the result, after directWait).
func TestDirectAnswerBeforeCallback(t *testing.T) {
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	ctx := testCtx(t, 30*time.Second)
	// The callback sees the task still in the stream at first: the
	// worker acknowledges it only after its pool's answer.
	acked := make(chan time.Duration, 1)
	res := double.ApplyAsync(ctx, pool, 4, func(int) {
		start := time.Now()
		for ctx.Err() == nil {
			info, err := c.conn.tasks.Info(ctx)
			if err == nil && info.State.Msgs == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		acked <- time.Since(start)
	}, nil)
	if v, err := res.Get(ctx); err != nil || v != 8 {
		t.Fatalf("got %v, %v", v, err)
	}
	wait := <-acked
	rs, err := c.conn.js.Stream(ctx, resultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := rs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 0 {
		t.Errorf("the worker stored the result in the stream too (after %v in the callback): it was not answered until the callback returned", wait.Round(time.Millisecond))
	}
}

// A task is published once, without asking the stream for an ack, when
// its result comes within confirmAfter; one still running after
// confirmAfter is published again, asking, and the stream keeps one copy
// (the message id): it runs once.
func TestPublishAsksForAckOnlyWhenSlow(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 30*time.Second)
	// The publications, as core NATS subscribers see them.
	pubs := make(chan *nats.Msg, 64)
	sub, err := c.conn.nc.ChanSubscribe(taskPrefix+">", pubs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.conn.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][2]int{{1, 0}, {2, int(5 * confirmAfter / time.Millisecond)}} {
		if v, err := sleepy.Apply(ctx, pool, a); err != nil || v != a[0] {
			t.Fatalf("task %d: got %v, %v", a[0], v, err)
		}
	}
	if err := c.conn.nc.Flush(); err != nil { // the copies of what it published came before the answer
		t.Fatal(err)
	}
	var quick, slow []*nats.Msg
	for len(pubs) > 0 {
		m := <-pubs
		if quick == nil || m.Subject == quick[0].Subject {
			quick = append(quick, m)
		} else {
			slow = append(slow, m)
		}
	}
	switch {
	case len(quick) == 0:
		t.Errorf("no publication seen")
	case quick[0].Reply != "":
		t.Errorf("a quick task was published asking for an ack (reply %q)", quick[0].Reply)
	}
	if len(slow) != 2 || slow[0].Reply != "" || slow[1].Reply == "" {
		t.Errorf("a task slower than confirmAfter: %d publications, want one without asking for an ack and one asking", len(slow))
	}
	if n := count(records(t, dir), "start_2_"); n != 1 {
		t.Errorf("the slow task ran %d times", n)
	}
	info, err := c.conn.tasks.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 2 {
		t.Errorf("the stream stored %d messages for 2 tasks", info.State.LastSeq)
	}
}

// A task whose publication is lost, and no result comes, is published
// again after confirmAfter: the call gets its result, the task ran once.
func TestLostPublication(t *testing.T) {
	var dropped atomic.Int32
	testHookDropPublish = func() bool { return dropped.Add(1) == 1 }
	t.Cleanup(func() { testHookDropPublish = nil })
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	if v, err := sleepy.Apply(testCtx(t, 30*time.Second), pool, [2]int{7, 0}); err != nil || v != 7 {
		t.Fatalf("got %v, %v", v, err)
	}
	if dropped.Load() != 1 {
		t.Errorf("%d publications without an ack, want 1 (dropped)", dropped.Load())
	}
	if n := count(records(t, dir), "start_7_"); n != 1 {
		t.Errorf("the task ran %d times", n)
	}
}

// A worker sends a small result to its pool before its request for the
// next task, so that the server routes the result first: between two
// results of one worker (one slot) goes exactly one request.
func TestResultBeforeNextPull(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1")
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 30*time.Second)
	seen := make(chan *nats.Msg, 256)
	for _, subj := range []string{directPrefix + ">", "$JS.API.CONSUMER.MSG.NEXT.>"} {
		sub, err := c.conn.nc.ChanSubscribe(subj, seen)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := c.conn.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const calls = 20
	applyDoubles(t, ctx, pool, calls)
	// The worker's request after the last result may come after it.
	var order []byte
	for results := 0; results < calls || len(order) == 0 || order[len(order)-1] != 'p'; {
		select {
		case m := <-seen:
			if strings.HasPrefix(m.Subject, directPrefix) {
				order = append(order, 'r')
				results++
			} else {
				order = append(order, 'p')
			}
		case <-ctx.Done():
			t.Fatalf("seen %q", order)
		}
	}
	first := bytes.IndexByte(order, 'r')
	if want := strings.Repeat("rp", calls); first < 0 || string(order[first:]) != want {
		t.Errorf("results (r) and requests for a task (p) after the first result: %q, want %q", order[first:], want)
	}
}

// A pool that takes a result sent directly acknowledges the task itself,
// as it answers, so that the stream removes the task before the pool's
// next task comes (the worker's own acknowledgement, a round trip later,
// competed with that task for the server's CPU). The worker (the pool's
// own, here) does not acknowledge such a task: the stream is empty once
// the call returns all the same, with no redelivery after the ack wait.
func TestPoolAcksDirectResult(t *testing.T) {
	var workerAcks atomic.Int32
	testHookWorkerAck = func() bool { workerAcks.Add(1); return false }
	t.Cleanup(func() { testHookWorkerAck = nil })
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	ctx := testCtx(t, 30*time.Second)
	applyDoubles(t, ctx, pool, 5)
	awaitEmptyStream(t, c) // 10 s: well within the ack wait of 30 s
	if n := workerAcks.Load(); n != 0 {
		t.Errorf("the worker acknowledged %d tasks that its pool acknowledged", n)
	}
}

// A result sent directly while its pool is away from the server (the
// pool's node lost, the pool reconnecting to another) is answered by the
// server itself, "503 no responders", as nothing listens on the result's
// subject. The worker must not take that for the pool's answer and
// acknowledge the task (the call then waited for ever: a 3-node cluster
// whose node was SIGKILLed lost a result so): it stores the result in
// the stream, where the pool finds it.
func TestDirectResultWhilePoolAway(t *testing.T) {
	c := startCluster(t, Options{})
	pool := localWorkerPool(t, c)
	ctx := testCtx(t, 30*time.Second)
	applyDoubles(t, ctx, pool, 3)
	s := sessionOf(t, c)
	// Away: the pool's subscription to its direct results is gone, as
	// for a pool whose server does not know it yet.
	away := false
	for _, sb := range s.subs {
		if sb.Subject == directPrefix+s.inst {
			if err := sb.Unsubscribe(); err != nil {
				t.Fatal(err)
			}
			away = true
		}
	}
	if !away {
		t.Fatal("no subscription to the pool's direct results")
	}
	if err := s.c.conn.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range 3 {
		if v, err := double.Apply(callCtx, pool, 21+i); err != nil || v != 2*(21+i) {
			t.Fatalf("call %d while the pool is away: %v, %v", i, v, err)
		}
	}
}

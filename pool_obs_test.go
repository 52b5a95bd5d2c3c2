//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/logtest"
)

// A slotReport is what a task saw of the worker that ran it.
type slotReport struct{ Slot, Pid int }

var workerSlot = mp.Register("test.obs.slot", func(struct{}) (slotReport, error) {
	return slotReport{mp.WorkerID(), os.Getpid()}, nil
})

// meetJob is a task that returns once N tasks of its round run at once:
// they then run in N different workers, each of which reports its slot.
type meetJob struct {
	Tracker string
	Round   int
	N       int
}

var meetTask = mp.Register("test.obs.meet", func(j meetJob) (slotReport, error) {
	mem, err := attachTracked(j.Tracker)
	if err != nil {
		return slotReport{}, err
	}
	here := trackWord(mem.Bytes(), j.Round, 0)
	here.Add(1)
	for deadline := time.Now().Add(30 * time.Second); int(here.Load()) < j.N; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			return slotReport{}, fmt.Errorf("round %d: %d of %d tasks came", j.Round, here.Load(), j.N)
		}
	}
	return slotReport{mp.WorkerID(), os.Getpid()}, nil
})

// meet runs n meetJobs of round on pool at once, and returns the slot of
// each worker, by pid.
func meet(t *testing.T, ctx context.Context, run func(meetJob) (slotReport, error), tr *tracker, round, n int) map[int]int {
	t.Helper()
	type out struct {
		r   slotReport
		err error
	}
	outs := make(chan out, n)
	for range n {
		go func() {
			r, err := run(meetJob{Tracker: tr.mem.Name(), Round: round, N: n})
			outs <- out{r, err}
		}()
	}
	slots := map[int]int{}
	for range n {
		o := <-outs
		if o.err != nil {
			t.Fatal(o.err)
		}
		slots[o.r.Pid] = o.r.Slot
	}
	if len(slots) != n {
		t.Fatalf("round %d: %d tasks that ran at once ran in %d workers: %v", round, n, len(slots), slots)
	}
	got := slices.Sorted(func(yield func(int) bool) {
		for _, s := range slots {
			if !yield(s) {
				return
			}
		}
	})
	for i, s := range got {
		if s != i {
			t.Fatalf("round %d: the workers' slots are %v, want 0..%d", round, got, n-1)
		}
	}
	return slots
}

var slotOutsidePool = mp.RegisterProc("test.obs.slotOutsidePool", func(struct{}) error {
	if id := mp.WorkerID(); id != -1 {
		return fmt.Errorf("WorkerID() = %d in a plain child", id)
	}
	return nil
})

// TestWorkerIDStableSlots checks that the 3 workers of a pool have the
// slots 0, 1 and 2, that a worker killed with SIGKILL is replaced by one
// in its slot, and that WorkerID is -1 in the parent and in a child
// started with NewProcess.
func TestWorkerIDStableSlots(t *testing.T) {
	ctx := ctxTimeout(t, 60*time.Second)
	if id := mp.WorkerID(); id != -1 {
		t.Fatalf("WorkerID() = %d in the parent, want -1", id)
	}
	p := mp.NewProcess(slotOutsidePool, struct{}{})
	start(t, p)
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := p.ExitCode(); code != 0 {
		t.Fatalf("the plain child exited with %d: WorkerID was not -1 there", code)
	}

	rec := logtest.New()
	pool := newPool(t, mp.PoolOptions{Processes: 3, Logger: rec.Logger()})
	tr := newTracker(t, 2)
	run := func(j meetJob) (slotReport, error) { return meetTask.Apply(ctx, pool, j) }
	before := meet(t, ctx, run, tr, 0, 3)
	var victim, victimSlot int
	for pid, slot := range before {
		if slot == 1 {
			victim, victimSlot = pid, slot
		}
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Wait(ctx, "mp: pool worker replaced", func(r logtest.Record) bool {
		pid, _ := r.Int("pid")
		return int(pid) == victim
	}); err != nil {
		t.Fatal(err)
	}
	after := meet(t, ctx, run, tr, 1, 3)
	for pid, slot := range after {
		if _, old := before[pid]; old {
			if slot != before[pid] {
				t.Errorf("worker %d moved from slot %d to %d", pid, before[pid], slot)
			}
		} else if slot != victimSlot {
			t.Errorf("the replacement of the worker in slot %d took slot %d", victimSlot, slot)
		}
	}
	if _, ok := after[victim]; ok {
		t.Fatalf("the killed worker %d still answers", victim)
	}
}

// TestWorkerIDExecutor checks the slots of an Executor's workers, which
// start on demand.
func TestWorkerIDExecutor(t *testing.T) {
	ctx := ctxTimeout(t, 60*time.Second)
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Shutdown(ctx, mp.ShutdownOptions{})
	tr := newTracker(t, 1)
	meet(t, ctx, func(j meetJob) (slotReport, error) { return meetTask.Submit(ctx, ex, j).Result(ctx) }, tr, 0, 2)
}

// TestPoolLogsWorkerReplaced checks the record of each way a worker ends
// and is replaced.
func TestPoolLogsWorkerReplaced(t *testing.T) {
	cases := []struct {
		name  string
		opts  mp.PoolOptions
		act   func(ctx context.Context, pool *mp.Pool, pid int) error
		level slog.Level
		want  map[string]any
	}{
		{
			name: "killed",
			act: func(_ context.Context, _ *mp.Pool, pid int) error {
				return syscall.Kill(pid, syscall.SIGKILL)
			},
			level: slog.LevelWarn,
			want:  map[string]any{"reason": "died", "signal": int64(9)},
		},
		{
			name: "max tasks",
			opts: mp.PoolOptions{MaxTasksPerChild: 2},
			act: func(ctx context.Context, pool *mp.Pool, _ int) error {
				_, err := workerSlot.Apply(ctx, pool, struct{}{})
				return err
			},
			level: slog.LevelInfo,
			want:  map[string]any{"reason": "max tasks", "tasks": int64(2)},
		},
		{
			name: "max memory",
			// Any worker has more: the first task is its last.
			opts:  mp.PoolOptions{MaxMemory: 1},
			act:   func(context.Context, *mp.Pool, int) error { return nil },
			level: slog.LevelInfo,
			want:  map[string]any{"reason": "max memory", "max_memory": uint64(1), "tasks": int64(1)},
		},
		{
			name: "task timeout",
			opts: mp.PoolOptions{TaskTimeout: 100 * time.Millisecond},
			act: func(ctx context.Context, pool *mp.Pool, _ int) error {
				_, err := sleepDouble.Apply(ctx, pool, 60_000)
				if !errors.Is(err, mp.ErrTaskTimeout) {
					return fmt.Errorf("a task past its timeout returned %v", err)
				}
				return nil
			},
			level: slog.LevelWarn,
			want:  map[string]any{"reason": "task timeout", "timeout": 100 * time.Millisecond},
		},
		{
			name: "task cancelled",
			act: func(bound context.Context, pool *mp.Pool, _ int) error {
				dir, err := os.MkdirTemp("", "mp-logcancel-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				ctx, cancel := context.WithCancel(bound)
				res := plainStep.ApplyAsync(ctx, pool, poolStep{Dir: dir, ID: "a", Hang: true, Ignore: true}, nil, nil)
				if err := awaitFileErr(bound, dir, "started-a"); err != nil {
					cancel()
					return err
				}
				cancel()
				if _, err := res.Get(bound); !errors.Is(err, context.Canceled) {
					return fmt.Errorf("cancelled ApplyAsync: %v", err)
				}
				return nil
			},
			level: slog.LevelInfo,
			want:  map[string]any{"reason": "task cancelled"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctxTimeout(t, 60*time.Second)
			rec := logtest.New()
			c.opts.Processes, c.opts.Logger = 1, rec.Logger()
			pool := newPool(t, c.opts)
			// The first task makes the worker ready, and is the first of
			// MaxTasksPerChild.
			first, err := workerSlot.Apply(ctx, pool, struct{}{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.act(ctx, pool, first.Pid); err != nil {
				t.Fatal(err)
			}
			r, err := rec.Wait(ctx, "mp: pool worker replaced", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Level != c.level {
				t.Errorf("level %v, want %v: %v", r.Level, c.level, r)
			}
			for k, v := range c.want {
				if got := r.Attrs[k].Any(); got != v {
					t.Errorf("%s = %v (%T), want %v (%T): %v", k, got, got, v, v, r)
				}
			}
			if pid, _ := r.Int("pid"); int(pid) != first.Pid || r.Str("worker") == "" {
				t.Errorf("the record names pid %d, the worker was %d: %v", pid, first.Pid, r)
			}
			if slot, ok := r.Int("slot"); !ok || slot != 0 {
				t.Errorf("slot %d, want 0: %v", slot, r)
			}
			// And the replacement serves, in the same slot.
			next, err := workerSlot.Apply(ctx, pool, struct{}{})
			if err != nil {
				t.Fatal(err)
			}
			if next.Pid == first.Pid || next.Slot != 0 {
				t.Errorf("after the replacement: %+v, before %+v", next, first)
			}
		})
	}
}

// TestPoolLogsGlobalLogger checks that a pool without a Logger of its own
// logs to the one of SetLogger.
func TestPoolLogsGlobalLogger(t *testing.T) {
	rec := logtest.New()
	mp.SetLogger(rec.Logger())
	defer mp.SetLogger(nil)
	ctx := ctxTimeout(t, 60*time.Second)
	pool := newPool(t, mp.PoolOptions{Processes: 1, MaxTasksPerChild: 1})
	if _, err := workerSlot.Apply(ctx, pool, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Wait(ctx, "mp: pool worker replaced", nil); err != nil {
		t.Fatal(err)
	}
}

var finalizer = mp.RegisterProc("test.obs.finalizer", func(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// One write of a whole line: appends of the workers do not mix.
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
})

// finalized returns the pids that the finalizer wrote into path.
func finalized(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var pids []int
	for _, l := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("%s: %q", path, b)
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}

// TestPoolFinalizerOnNormalExit: a pool of one worker recycled after each
// task runs two tasks; once the third worker is ready, the pool is
// closed. The finalizer ran exactly once in each of the three: the two
// recycled, and the one let go by Close.
func TestPoolFinalizerOnNormalExit(t *testing.T) {
	ctx := ctxTimeout(t, 60*time.Second)
	path := t.TempDir() + "/finalized"
	pool := newPool(t, mp.PoolOptions{Processes: 1, MaxTasksPerChild: 1, Finalizer: mp.NewCall(finalizer, path)})
	var want []int
	for range 2 {
		r, err := workerSlot.Apply(ctx, pool, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Pid)
	}
	waitFor(t, func() bool {
		s := pool.Stats()
		return len(s) == 1 && s[0].Ready && !slices.Contains(want, s[0].Pid)
	})
	want = append(want, pool.Stats()[0].Pid)
	slices.Sort(want)
	pool.Close()
	if err := pool.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if got := finalized(t, path); !slices.Equal(got, want) {
		t.Fatalf("the finalizer ran in %v, want once in each of %v", got, want)
	}
}

// TestPoolFinalizerNotWhenKilled: a worker killed with SIGKILL does not
// run the finalizer; its replacement, let go by Close, does.
func TestPoolFinalizerNotWhenKilled(t *testing.T) {
	ctx := ctxTimeout(t, 60*time.Second)
	path := t.TempDir() + "/finalized"
	pool := newPool(t, mp.PoolOptions{Processes: 1, Finalizer: mp.NewCall(finalizer, path)})
	first, err := workerSlot.Apply(ctx, pool, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second, err := workerSlot.Apply(ctx, pool, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if second.Pid == first.Pid {
		t.Fatal("the killed worker answered")
	}
	pool.Close()
	if err := pool.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if got := finalized(t, path); !slices.Equal(got, []int{second.Pid}) {
		t.Fatalf("the finalizer ran in %v, want only in %d (not in the killed %d)", got, second.Pid, first.Pid)
	}
}

// TestPoolFinalizerUnknownTarget: a finalizer that is not registered is
// refused by NewPool.
func TestPoolFinalizerUnknownTarget(t *testing.T) {
	f := &mp.Func[string, struct{}]{}
	_, err := mp.NewPool(mp.PoolOptions{Processes: 1, Finalizer: mp.NewCall(f, "")})
	if !errors.Is(err, mp.ErrUnknownTarget) {
		t.Fatalf("NewPool with an unregistered finalizer: %v", err)
	}
}

// envPoolSizeChild makes the test binary, run by
// TestPoolSizeFollowsGOMAXPROCS, print the size of a default pool.
const envPoolSizeChild = "MP_TEST_POOL_SIZE_CHILD"

// TestPoolSizeFollowsGOMAXPROCS runs this test binary with GOMAXPROCS=1:
// a pool made there without Processes has one worker, whatever the
// number of CPUs.
func TestPoolSizeFollowsGOMAXPROCS(t *testing.T) {
	if os.Getenv(envPoolSizeChild) != "" {
		pool, err := mp.NewPool(mp.PoolOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("processes=%d gomaxprocs=%d\n", pool.Processes(), runtime.GOMAXPROCS(0))
		pool.Terminate()
		pool.Join(context.Background())
		return
	}
	ctx := ctxTimeout(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPoolSizeFollowsGOMAXPROCS$", "-test.count=1")
	cmd.Env = append(os.Environ(), envPoolSizeChild+"=1", "GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "processes=1 gomaxprocs=1\n") {
		t.Fatalf("with GOMAXPROCS=1 on %d CPUs, the child said: %s", runtime.NumCPU(), out)
	}
}

// awaitFileErr waits for dir/name, as awaitFile does, returning an error
// instead of failing a test.
func awaitFileErr(ctx context.Context, dir, name string) error {
	for {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %s: %w", name, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

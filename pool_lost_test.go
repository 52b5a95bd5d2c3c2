//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp"
)

// A tracker counts, in shared memory, the starts and finishes of each task
// and the pid that ran it, so that a test sees what a dead worker did.
// Pool task arguments cannot carry handles, so tasks attach to it by name.
type tracker struct {
	mem *mp.SharedMemory
}

const trackSlot = 16 // starts u32, finishes u32, pid u32, release u32 (see trackJob.Hold)

func newTracker(t *testing.T, n int) *tracker {
	t.Helper()
	name := fmt.Sprintf("mp-test-track-%d-%d", os.Getpid(), time.Now().UnixNano())
	mem, err := mp.NewSharedMemory(name, n*trackSlot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Unlink(); mem.Close() })
	return &tracker{mem}
}

func trackWord(mem []byte, n, word int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&mem[n*trackSlot+4*word])) //nolint:gosec // inside the slot
}

func (tr *tracker) starts(n int) uint32   { return trackWord(tr.mem.Bytes(), n, 0).Load() }
func (tr *tracker) finishes(n int) uint32 { return trackWord(tr.mem.Bytes(), n, 1).Load() }
func (tr *tracker) pid(n int) int         { return int(trackWord(tr.mem.Bytes(), n, 2).Load()) }
func (tr *tracker) release(n int)         { trackWord(tr.mem.Bytes(), n, 3).Store(1) }

var (
	trackedMu  sync.Mutex
	trackedMem = map[string]*mp.SharedMemory{} // in a worker, by name
)

type trackJob struct {
	Tracker string
	N       int
	Stop    bool // stop this process with SIGSTOP at its first start
	Hold    bool // once started, wait until the tracker releases task N
}

var trackedTask = mp.Register("test.trackedTask", runTracked)

// attachTracked returns the tracker's memory named name, attached once
// per worker.
func attachTracked(name string) (*mp.SharedMemory, error) {
	trackedMu.Lock()
	defer trackedMu.Unlock()
	mem := trackedMem[name]
	if mem == nil {
		var err error
		if mem, err = mp.AttachSharedMemory(name); err != nil {
			return nil, err
		}
		trackedMem[name] = mem
	}
	return mem, nil
}

func runTracked(j trackJob) (int, error) {
	mem, err := attachTracked(j.Tracker)
	if err != nil {
		return 0, err
	}
	b := mem.Bytes()
	trackWord(b, j.N, 2).Store(uint32(os.Getpid()))
	if trackWord(b, j.N, 0).Add(1) == 1 && j.Stop {
		// To this thread, which then stops before it returns: sent to the
		// process, the signal may go to another thread, which can take a
		// while to stop them all on a busy machine.
		runtime.LockOSThread()
		syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGSTOP)
		runtime.UnlockOSThread()
	}
	for j.Hold && trackWord(b, j.N, 3).Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	trackWord(b, j.N, 1).Add(1)
	return j.N, nil
}

// procState returns the state letter of pid in /proc ('T' stopped, 'Z'
// zombie), or 0 if it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// pendingResult is an AsyncResult or a Future, as the death tests see it.
type pendingResult struct {
	ready func() bool
	get   func(context.Context) (int, error)
}

// checkWorkerDeath is the test of issue 10 point 1 for a Pool or an
// Executor with one worker: warm gives it quick tasks, so that it is then
// given many at once; submit gives it 201 tracked tasks, of which the 101st
// stops the worker (which then holds the results of the quick tasks before
// it and has the tasks after it waiting), and the worker is killed. It
// checks that exactly that task fails, with a *WorkerLostError carrying
// SIGKILL; that every other task succeeds, those finished in the dead
// worker included; and that no task starts twice.
func checkWorkerDeath(t *testing.T, warm func(context.Context) error, submit func(trackJob) pendingResult, stats func() []mp.WorkerStats) {
	const n, stop = 201, 100
	tr := newTracker(t, n)
	ctx := ctxTimeout(t, 60*time.Second)
	for range 30 {
		if err := warm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	res := make([]pendingResult, n)
	for i := range n {
		res[i] = submit(trackJob{Tracker: tr.mem.Name(), N: i, Stop: i == stop})
	}
	waitFor(t, func() bool { return tr.starts(stop) == 1 && procState(tr.pid(stop)) == 'T' })
	pid := tr.pid(stop)
	if !slices.ContainsFunc(stats(), func(s mp.WorkerStats) bool { return s.Pid == pid }) {
		t.Fatalf("task %d ran in pid %d, not a worker of the pool (%+v)", stop, pid, stats())
	}
	held := 0
	for i := range stop {
		if tr.finishes(i) == 1 && !res[i].ready() {
			held++
		}
	}
	t.Logf("%d finished tasks were not delivered yet when the worker was killed", held)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	diedHere := 0
	for i, r := range res {
		v, err := r.get(ctx)
		if s := tr.starts(i); s != 1 {
			t.Errorf("task %d started %d times", i, s)
		}
		if i == stop {
			var lost *mp.WorkerLostError
			if !errors.As(err, &lost) || !errors.Is(err, mp.ErrWorkerLost) || lost.ExitCode != -9 || lost.Pid != pid || !strings.Contains(err.Error(), "killed") {
				t.Errorf("the running task: %v, want a *WorkerLostError of pid %d with exit code -9", err, pid)
			}
			if f := tr.finishes(i); f != 0 {
				t.Errorf("the running task finished %d times", f)
			}
			continue
		}
		if err != nil || v != i {
			t.Errorf("task %d = %d, %v", i, v, err)
		}
		if tr.pid(i) == pid {
			diedHere++
		}
	}
	t.Logf("%d tasks had run in the dead worker", diedHere)
}

// Issue 10 point 1: a worker killed while it holds finished results and
// has tasks waiting fails exactly the task it was running; the results it
// held are delivered; the waiting tasks run elsewhere; nothing runs twice.
func TestPoolWorkerDeathFailsOnlyTheRunningTask(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	checkWorkerDeath(t, func(ctx context.Context) error {
		_, err := double.Apply(ctx, pool, 1)
		return err
	}, func(j trackJob) pendingResult {
		r := trackedTask.ApplyAsync(context.Background(), pool, j, nil, nil)
		return pendingResult{r.Ready, r.Get}
	}, pool.Stats)
}

// The same through an Executor's Futures.
func TestExecutorWorkerDeathFailsOnlyTheRunningTask(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	checkWorkerDeath(t, func(ctx context.Context) error {
		return double.Submit(context.Background(), ex, 1).Err(ctx)
	}, func(j trackJob) pendingResult {
		f := trackedTask.Submit(context.Background(), ex, j)
		return pendingResult{f.Done, f.Result}
	}, ex.Stats)
}

// twoIdleWorkers makes sure that a Pool or an Executor of two workers
// has both running and idle, and returns their pids. An Executor starts a
// worker only for a task that no worker is free to take, so how many its
// tasks started depends on how fast each was taken (on a busy machine, one
// worker may take them all): here a first task holds its worker until a
// second has started, which then needs the other worker.
func twoIdleWorkers(t *testing.T, ctx context.Context, submit func(trackJob) pendingResult, stats func() []mp.WorkerStats) []int {
	t.Helper()
	tr := newTracker(t, 2)
	res := make([]pendingResult, 2)
	for i := range res {
		res[i] = submit(trackJob{Tracker: tr.mem.Name(), N: i, Hold: true})
		waitFor(t, func() bool { return tr.starts(i) == 1 })
	}
	pids := []int{tr.pid(0), tr.pid(1)}
	if pids[0] == pids[1] {
		t.Fatalf("both held tasks ran in pid %d", pids[0])
	}
	for i, r := range res {
		tr.release(i)
		if v, err := r.get(ctx); err != nil || v != i {
			t.Fatalf("held task %d = %d, %v", i, v, err)
		}
	}
	// Both have answered, and hold nothing: idle. Stats lists them once
	// each is ready.
	waitFor(t, func() bool {
		st := stats()
		return len(st) == 2 && !slices.ContainsFunc(st, func(s mp.WorkerStats) bool { return !s.Ready || !slices.Contains(pids, s.Pid) })
	})
	return pids
}

// checkIdleDeaths is the test of issue 10 point 18 for a Pool or an
// Executor of two workers: both are killed while idle, then tasks are
// submitted at once (some go to the dead workers before the pool sees them
// dead), or once the workers are seen dead; every task runs, once.
func checkIdleDeaths(t *testing.T, submit func(trackJob) pendingResult, stats func() []mp.WorkerStats) {
	const n = 20
	ctx := ctxTimeout(t, 60*time.Second)
	run := func(round int) {
		tr := newTracker(t, n)
		res := make([]pendingResult, n)
		for i := range n {
			res[i] = submit(trackJob{Tracker: tr.mem.Name(), N: i})
		}
		for i, r := range res {
			if v, err := r.get(ctx); err != nil || v != i {
				t.Errorf("round %d: task %d = %d, %v", round, i, v, err)
			}
			if s := tr.starts(i); s != 1 {
				t.Errorf("round %d: task %d started %d times", round, i, s)
			}
		}
	}
	for round := range 4 {
		pids := twoIdleWorkers(t, ctx, submit, stats)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if round%2 == 1 {
			// Dead (a zombie, or reaped) before the tasks come.
			waitFor(t, func() bool {
				return !slices.ContainsFunc(pids, func(pid int) bool { st := procState(pid); return st != 0 && st != 'Z' })
			})
		}
		run(round)
	}
}

// Issue 10 point 18: workers killed while idle fail nothing.
func TestPoolIdleWorkersKilledFailNothing(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	checkIdleDeaths(t, func(j trackJob) pendingResult {
		r := trackedTask.ApplyAsync(context.Background(), pool, j, nil, nil)
		return pendingResult{r.Ready, r.Get}
	}, pool.Stats)
}

func TestExecutorIdleWorkersKilledFailNothing(t *testing.T) {
	ex := newExecutor(t, mp.PoolOptions{Processes: 2})
	checkIdleDeaths(t, func(j trackJob) pendingResult {
		f := trackedTask.Submit(context.Background(), ex, j)
		return pendingResult{f.Done, f.Result}
	}, ex.Stats)
}

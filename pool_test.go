//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var double = mp.Register("test.double", func(x int) (int, error) { return 2 * x, nil })

type poolJob struct {
	Mode  string
	Sleep time.Duration
	N     int
}

type poolOut struct {
	Pid  int
	Name string
	Init string
	N    int
}

var initValue string

var poolInit = mp.RegisterProc("test.poolInit", func(v string) error {
	if v == "fail" {
		return errors.New("initializer refuses")
	}
	initValue = v
	return nil
})

var poolJobFn = mp.Register("test.poolJob", func(j poolJob) (poolOut, error) {
	out := poolOut{Pid: os.Getpid(), Name: mp.CurrentProcess().Name, Init: initValue, N: j.N}
	time.Sleep(j.Sleep)
	switch j.Mode {
	case "die":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	case "panic":
		panicInTask()
	case "error":
		return out, fmt.Errorf("task %d failed", j.N)
	}
	return out, nil
})

func panicInTask() { panic("task panicked") }

func newPool(t *testing.T, opts mp.PoolOptions) *mp.Pool {
	t.Helper()
	p, err := mp.NewPool(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Terminate()
		if err := p.Join(ctxTimeout(t, 20*time.Second)); err != nil {
			t.Errorf("Join after Terminate: %v", err)
		}
	})
	return p
}

func TestPoolApplyAndMap(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	if v, err := double.Apply(ctx, pool, 21); err != nil || v != 42 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	for _, cs := range []int{0, 1, 7, 5000} {
		got, err := double.Map(ctx, pool, items, cs)
		if err != nil || len(got) != len(items) {
			t.Fatalf("Map chunksize %d: %d results, %v", cs, len(got), err)
		}
		for i, v := range got {
			if v != 2*i {
				t.Fatalf("Map[%d] = %d", i, v)
			}
		}
	}
	if got, err := double.Map(ctx, pool, nil, 0); err != nil || len(got) != 0 {
		t.Fatalf("Map of nothing = %v, %v", got, err)
	}
	// ApplyAsync with callbacks that run here.
	pids := make(chan int, 1)
	res := poolJobFn.ApplyAsync(context.Background(), pool, poolJob{N: 1}, func(o poolOut) { pids <- os.Getpid() }, nil)
	o, err := res.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cb := <-pids; cb != os.Getpid() || o.Pid == os.Getpid() {
		t.Fatalf("callback ran in %d, task in %d, parent %d", cb, o.Pid, os.Getpid())
	}
	if !strings.HasPrefix(o.Name, "PoolWorker-") {
		t.Errorf("task ran in a process named %q", o.Name)
	}
	if ok, err := res.Successful(); !ok || err != nil || !res.Ready() {
		t.Errorf("Successful = %v, %v", ok, err)
	}
	errs := make(chan error, 1)
	res = poolJobFn.ApplyAsync(context.Background(), pool, poolJob{Mode: "error", N: 7}, nil, func(err error) { errs <- err })
	if _, err := res.Get(ctx); err == nil || !strings.Contains(err.Error(), "task 7 failed") {
		t.Fatalf("failing task = %v", err)
	}
	if err := <-errs; err == nil {
		t.Fatal("error callback not called")
	}
	if ok, _ := res.Successful(); ok {
		t.Error("failed task Successful")
	}
}

func seqOf(n int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for i := 0; i < n; i++ {
			if !yield(i) {
				return
			}
		}
	}
}

func TestPoolImap(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	var got []int
	for v, err := range double.Imap(ctx, pool, seqOf(100), 3) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	for i, v := range got {
		if v != 2*i {
			t.Fatalf("Imap result %d = %d (not in order)", i, v)
		}
	}
	var un []int
	for v, err := range double.ImapUnordered(ctx, pool, seqOf(100), 1) {
		if err != nil {
			t.Fatal(err)
		}
		un = append(un, v)
	}
	slices.Sort(un)
	if len(un) != 100 || un[99] != 198 {
		t.Fatalf("ImapUnordered gave %d results", len(un))
	}
	// Stopping early is fine and leaves the pool usable.
	for _, err := range double.Imap(ctx, pool, seqOf(1000000), 10) {
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if v, err := double.Apply(ctx, pool, 1); err != nil || v != 2 {
		t.Fatalf("Apply after an abandoned Imap = %d, %v", v, err)
	}
}

func TestPoolWorkerKilledMidTask(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	dying := poolJobFn.ApplyAsync(context.Background(), pool, poolJob{Mode: "die"}, nil, nil)
	var others []*mp.AsyncResult[poolOut]
	for i := 0; i < 10; i++ {
		others = append(others, poolJobFn.ApplyAsync(context.Background(), pool, poolJob{N: i, Sleep: time.Millisecond}, nil, nil))
	}
	_, err := dying.Get(ctx)
	var wl *mp.WorkerLostError
	if !errors.As(err, &wl) || !errors.Is(err, mp.ErrWorkerLost) || wl.ExitCode != -9 {
		t.Fatalf("task whose worker was killed: %v", err)
	}
	for i, r := range others {
		if o, err := r.Get(ctx); err != nil || o.N != i {
			t.Fatalf("other task %d = %+v, %v", i, o, err)
		}
	}
	// The replacement starts in the background: wait for it.
	waitFor(t, func() bool { return len(pool.Stats()) == 2 })
}

func TestPoolIdleWorkerKilled(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	victim := pool.Stats()[0].Pid
	syscall.Kill(victim, syscall.SIGKILL)
	waitFor(t, func() bool {
		for _, s := range pool.Stats() {
			if s.Pid == victim {
				return false
			}
		}
		return len(pool.Stats()) == 2
	})
	got, err := double.Map(ctx, pool, []int{1, 2, 3, 4, 5, 6}, 1)
	if err != nil || got[5] != 12 {
		t.Fatalf("Map after an idle worker was killed = %v, %v", got, err)
	}
}

func TestPoolTaskTimeout(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1, TaskTimeout: 200 * time.Millisecond})
	ctx := ctxTimeout(t, 30*time.Second)
	before := pool.Stats()[0].Pid
	_, err := poolJobFn.Apply(ctx, pool, poolJob{Sleep: time.Minute})
	if !errors.Is(err, mp.ErrTaskTimeout) {
		t.Fatalf("hung task = %v", err)
	}
	o, err := poolJobFn.Apply(ctx, pool, poolJob{N: 3})
	if err != nil || o.N != 3 || o.Pid == before {
		t.Fatalf("task after a timeout = %+v, %v (old worker %d)", o, err, before)
	}
}

func TestPoolPanicKeepsWorker(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	o1, _ := poolJobFn.Apply(ctx, pool, poolJob{})
	_, err := poolJobFn.Apply(ctx, pool, poolJob{Mode: "panic"})
	var re *mp.RemoteError
	if !errors.As(err, &re) || !re.Panic || !strings.Contains(re.Stack, "panicInTask") {
		t.Fatalf("panicking task = %v", err)
	}
	o2, err := poolJobFn.Apply(ctx, pool, poolJob{})
	if err != nil || o2.Pid != o1.Pid {
		t.Fatalf("after a panic: %+v, %v; worker was %d", o2, err, o1.Pid)
	}
}

func TestPoolMaxTasksAndInitializer(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2, MaxTasksPerChild: 3, Initializer: mp.NewCall(poolInit, "ready")})
	ctx := ctxTimeout(t, 60*time.Second)
	pids := map[int]int{}
	for i := 0; i < 12; i++ {
		o, err := poolJobFn.Apply(ctx, pool, poolJob{N: i})
		if err != nil {
			t.Fatal(err)
		}
		if o.Init != "ready" {
			t.Fatalf("task saw initializer value %q", o.Init)
		}
		pids[o.Pid]++
	}
	for pid, n := range pids {
		if n > 3 {
			t.Fatalf("worker %d ran %d tasks, max 3", pid, n)
		}
	}
	if len(pids) < 4 {
		t.Fatalf("12 tasks ran in %d workers", len(pids))
	}
	// A failing initializer breaks the pool instead of looping.
	bad, err := mp.NewPool(mp.PoolOptions{Processes: 1, Initializer: mp.NewCall(poolInit, "fail")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = double.Apply(ctx, bad, 1)
	if err == nil || !strings.Contains(err.Error(), "initializer refuses") {
		t.Fatalf("task in a pool whose initializer fails = %v", err)
	}
	bad.Close()
	if err := bad.Join(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPoolTerminateWhileBusy(t *testing.T) {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	var rs []*mp.AsyncResult[poolOut]
	for i := 0; i < 6; i++ {
		rs = append(rs, poolJobFn.ApplyAsync(context.Background(), pool, poolJob{Sleep: time.Minute}, nil, nil))
	}
	time.Sleep(50 * time.Millisecond)
	pool.Terminate()
	if err := pool.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Join after Terminate: %v", err)
	}
	for _, r := range rs {
		if _, err := r.Get(ctxTimeout(t, 5*time.Second)); !errors.Is(err, mp.ErrPoolTerminated) {
			t.Fatalf("task of a terminated pool = %v", err)
		}
	}
	if _, err := double.Apply(context.Background(), pool, 1); !errors.Is(err, mp.ErrPoolClosed) {
		t.Fatalf("Apply on a terminated pool = %v", err)
	}
}

func TestPoolCloseJoinFinishesWork(t *testing.T) {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	var rs []*mp.AsyncResult[int]
	for i := 0; i < 20; i++ {
		rs = append(rs, double.ApplyAsync(context.Background(), pool, i, nil, nil))
	}
	pool.Close()
	if err := pool.Join(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if v, err := r.Get(ctxTimeout(t, time.Second)); err != nil || v != 2*i {
			t.Fatalf("task %d after Close+Join = %d, %v", i, v, err)
		}
	}
}

func TestPoolMapCancel(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	jobs := make([]poolJob, 40)
	for i := range jobs {
		jobs[i] = poolJob{Sleep: 100 * time.Millisecond}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := poolJobFn.Map(ctx, pool, jobs, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled Map = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled Map took %v", d)
	}
	// The rest was not dispatched: the pool is soon free again.
	if v, err := double.Apply(ctxTimeout(t, 2*time.Second), pool, 4); err != nil || v != 8 {
		t.Fatalf("Apply after a cancelled Map = %d, %v", v, err)
	}
}

var hoard [][]byte

// leak keeps n MiB alive in the worker, like leaky native code would.
var leak = mp.Register("test.leak", func(n int) (int, error) {
	b := make([]byte, n<<20)
	for i := range b {
		b[i] = 1
	}
	hoard = append(hoard, b)
	return os.Getpid(), nil
})

func TestPoolMemoryCeiling(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1, MaxMemory: 64 << 20})
	ctx := ctxTimeout(t, 30*time.Second)
	small, err := leak.Apply(ctx, pool, 1)
	if err != nil {
		t.Fatal(err)
	}
	same, err := leak.Apply(ctx, pool, 1)
	if err != nil || same != small {
		t.Fatalf("a worker under its ceiling was replaced: %d then %d, %v", small, same, err)
	}
	big, err := leak.Apply(ctx, pool, 100)
	if err != nil || big != small {
		t.Fatalf("leaking task = %d, %v", big, err)
	}
	next, err := leak.Apply(ctx, pool, 1)
	if err != nil || next == big {
		t.Fatalf("worker over its ceiling was kept: pid %d then %d, %v", big, next, err)
	}
}

type gatedItem struct {
	X    int
	Gate string // item 1 waits until this file exists
}

var gated = mp.Register("test.gated", func(it gatedItem) (int, error) {
	if it.X == 1 {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
			if _, err := os.Stat(it.Gate); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return 0, errors.New("gate never opened")
			}
		}
	}
	return it.X, nil
})

// A worker holds the results of quick tasks while its next task is already
// there, to send them together; a slow next task must not hold them back.
// Item 1 here waits until item 0's result has reached the pool.
func TestPoolResultsOfQuickTasksNotHeldBySlowOne(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	gate := t.TempDir() + "/gate"
	items := make([]gatedItem, 20) // enough for the worker to get several at once
	for i := range items {
		items[i] = gatedItem{X: i, Gate: gate}
	}
	opened := false
	progress := func(done, total int) {
		if !opened {
			opened = true
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Error(err)
			}
		}
	}
	ctx := ctxTimeout(t, 30*time.Second)
	out, err := gated.Map(ctx, pool, items, 1, mp.WithProgress(progress))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != i {
			t.Fatalf("result %d = %d", i, v)
		}
	}
}

type vec struct {
	X, Y float32
	N    int64
	Tag  [2]byte
}

var scaleVec = mp.Register("test.scaleVec", func(v vec) (vec, error) {
	return vec{X: 2 * v.X, Y: 2 * v.Y, N: v.N + 1, Tag: [2]byte{v.Tag[1], v.Tag[0]}}, nil
})

// Chunks of fixed-size structs travel as raw memory: they must arrive
// whole, in order, in Map and Imap alike.
func TestPoolMapFixedSizeStructs(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	items := make([]vec, 1001)
	want := make([]vec, len(items))
	for i := range items {
		items[i] = vec{X: float32(i), Y: -float32(i) / 2, N: int64(i) << 33, Tag: [2]byte{byte(i), 'x'}}
		want[i] = vec{X: 2 * items[i].X, Y: 2 * items[i].Y, N: items[i].N + 1, Tag: [2]byte{'x', byte(i)}}
	}
	got, err := scaleVec.Map(ctx, pool, items, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatal("Map of structs: wrong results")
	}
	i := 0
	for v, err := range scaleVec.Imap(ctx, pool, slices.Values(items), 7) {
		if err != nil || v != want[i] {
			t.Fatalf("Imap result %d = %+v, %v", i, v, err)
		}
		i++
	}
	if i != len(items) {
		t.Fatalf("Imap gave %d results", i)
	}
}

var low8 = mp.Register("test.low8", func(x int) (int8, error) { return int8(x), nil })
var widen = mp.Register("test.widen", func(x int8) (int64, error) { return int64(x) << 40, nil })

// Results narrower than the items are written over them in the worker;
// wider ones are not.
func TestPoolMapNarrowAndWideResults(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	items := make([]int, 50000)
	for i := range items {
		items[i] = i*7 - 1000
	}
	small, err := low8.Map(ctx, pool, items, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range small {
		if v != int8(items[i]) {
			t.Fatalf("low8(%d) = %d", items[i], v)
		}
	}
	big, err := widen.Map(ctx, pool, small, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range big {
		if v != int64(small[i])<<40 {
			t.Fatalf("widen(%d) = %d", small[i], v)
		}
	}
}

// Stats tells when workers have started and taken their initializer, and
// so take tasks.
func TestPoolStatsReady(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2, Initializer: mp.NewCall(poolInit, "ready")})
	if _, err := poolJobFn.Apply(ctxTimeout(t, 30*time.Second), pool, poolJob{}); err != nil {
		t.Fatal(err)
	}
	ready := func() int {
		n := 0
		for _, s := range pool.Stats() {
			if s.Ready {
				n++
			}
		}
		return n
	}
	if ready() < 1 {
		t.Fatal("a worker ran a task but is not ready")
	}
	for deadline := time.Now().Add(30 * time.Second); ready() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 workers ready after 30 s", ready())
		}
	}
}

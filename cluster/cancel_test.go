//go:build linux

package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// inWindow runs act right before the publication of task idx of the
// first job of more than idx tasks, then lets that publication go only
// once the session's cancelLoop has handled the cancellation of n tasks
// of the job (purged the stream, told the workers): act falls between
// the session's registration of the job and the task's publication.
func inWindow(t *testing.T, idx int, act func(), n int) {
	t.Helper()
	inWindowAt(t, 1, idx, act, n)
}

// inWindowAt is inWindow at the nth publication of task idx (the first,
// or one again: see republish).
func inWindowAt(t *testing.T, nth, idx int, act func(), n int) {
	t.Helper()
	var calls atomic.Int32
	handled := make(chan uint64, 4096) // job numbers
	var once sync.Once
	testHookCancelDone = func(job uint64, _ int) {
		select {
		case handled <- job:
		default:
		}
	}
	testHookBeforePublish = func(job uint64, i int) {
		if i != idx {
			return
		}
		if int(calls.Add(1)) != nth {
			return
		}
		once.Do(func() {
			act()
			deadline := time.After(30 * time.Second)
			for k := 0; k < n; {
				select {
				case j := <-handled:
					if j == job {
						k++
					}
				case <-deadline:
					t.Errorf("%d of %d cancellations handled in 30 s", k, n)
					return
				}
			}
		})
	}
	t.Cleanup(func() { testHookBeforePublish, testHookCancelDone = nil, nil })
}

// assertNeverRan starts a worker of one slot, which takes the stream's
// tasks in order, runs a task through pool after those cancelled, and
// checks that none of the tasks of the given sleepy ids started: a task
// published after its purge would have run before the last one.
func assertNeverRan(t *testing.T, c *Cluster, pool *mp.Pool, dir string, ids ...int) {
	t.Helper()
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	if v, err := sleepy.Apply(testCtx(t, 30*time.Second), pool, [2]int{1000, 0}); err != nil || v != 1000 {
		t.Fatalf("the task after: got %v, %v", v, err)
	}
	lines := records(t, dir)
	for _, id := range ids {
		if n := count(lines, "start_"+strconv.Itoa(id)+"_"); n != 0 {
			t.Errorf("cancelled task %d ran %d times after its caller had its error", id, n)
		}
	}
}

// A call cancelled after the session registered its task and before
// the task's publication: the task never runs, not even on a worker that
// starts afterwards (which heard no cancellation).
func TestCancelBeforePublicationNeverRuns(t *testing.T) {
	dir := t.TempDir()
	var logs lockedBuffer
	c := startCluster(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	inWindow(t, 0, cancel, 1)
	pool := submitOnly(t, c, mp.PoolOptions{})
	if _, err := sleepy.Apply(ctx, pool, [2]int{7, 0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	assertNeverRan(t, c, pool, dir, 7)
	if strings.Contains(logs.String(), "barrier") {
		t.Errorf("the barrier before the purge failed: %s", logs.String())
	}
}

// sleepies returns n sleepy items of ids 0..n-1 that take no time, and
// their ids.
func sleepies(n int) (items [][2]int, ids []int) {
	items, ids = make([][2]int, n), make([]int, n)
	for i := range items {
		items[i], ids[i] = [2]int{i, 0}, i
	}
	return items, ids
}

// A pool terminated while a Map's chunks are published one by one (here
// right before the third of five): none of its chunks runs, neither
// those published before (purged) nor the later ones.
func TestTerminateMidPublicationNeverRuns(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	var pool *mp.Pool
	inWindow(t, 2, func() { pool.Terminate() }, 0)
	pool = submitOnly(t, c, mp.PoolOptions{})
	items, ids := sleepies(5)
	if _, err := sleepy.MapAsync(testCtx(t, 60*time.Second), pool, items, 1).Get(context.Background()); !errors.Is(err, mp.ErrPoolTerminated) {
		t.Fatalf("got %v", err)
	}
	assertNeverRan(t, c, submitOnly(t, c, mp.PoolOptions{}), dir, ids...)
}

// A Map whose ctx ends while its chunks are published one by one (here
// right before the third of five): none of its chunks runs. (Those
// published are purged; those not published when the call has its error
// never are: see TestMapCtxEndsDuringPublication.)
func TestCancelMidPublicationNeverRuns(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	inWindow(t, 2, cancel, 0)
	pool := submitOnly(t, c, mp.PoolOptions{})
	items, ids := sleepies(5)
	if _, err := sleepy.MapAsync(ctx, pool, items, 1).Get(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	assertNeverRan(t, c, pool, dir, ids...)
}

// A call whose first publication was lost, cancelled right before the
// session publishes it again (asking for the stream's ack, see
// confirmLoop): the task never runs. (The purge found nothing to remove;
// the publication after it would have stayed in the stream.)
func TestCancelBeforeRepublicationNeverRuns(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	var drops atomic.Int32
	testHookDropPublish = func() bool { return drops.Add(1) == 1 }
	t.Cleanup(func() { testHookDropPublish = nil })
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	inWindowAt(t, 2, 0, cancel, 1)
	pool := submitOnly(t, c, mp.PoolOptions{})
	if _, err := sleepy.Apply(ctx, pool, [2]int{7, 0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	assertNeverRan(t, c, pool, dir, 7)
}

// sessionOf returns the session of c's only pool.
func sessionOf(t *testing.T, c *Cluster) *session {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sessions) != 1 {
		t.Fatalf("%d pools open", len(c.sessions))
	}
	for s := range c.sessions {
		return s
	}
	return nil
}

// A cancellation that reaches a worker before the task it cancels (it
// travels on a subject of its own; here the purge missed the task): the
// worker skips the task when it arrives, and acknowledges it.
func TestCancelBeforeTaskSkipped(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envDir, dir) // for the local workers
	c := startCluster(t, Options{})
	var s *session
	inWindow(t, 0, func() {
		// As the pool's cancellation, without its purge.
		n := s.local
		cm := cancelMsg{Inst: s.inst, Job: 1, Idx: 0}
		if err := c.conn.nc.Publish(cancelPrefix+c.opts.Pool, cm.appendTo(nil)); err != nil {
			t.Error(err)
		}
		for bound := testCtx(t, 30*time.Second); ; time.Sleep(time.Millisecond) {
			n.mu.Lock()
			heard := n.cancelled.has(jobKey{s.inst, 1}, 0)
			n.mu.Unlock()
			if heard || bound.Err() != nil {
				break
			}
		}
	}, 0)
	pool := localWorkerPool(t, c)
	s = sessionOf(t, c)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := sleepy.Apply(ctx, pool, [2]int{7, 0})
		res <- err
	}()
	// Taken and acknowledged.
	cons, err := c.conn.js.Consumer(ctx, taskStream, taskDurable(c.opts.Pool, s.fp))
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Delivered.Stream >= 1 && info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	// The cancellation was not the pool's: its result may come first.
	if err := <-res; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrCancelledByPeer) {
		t.Fatalf("got %v", err)
	}
	if n := count(records(t, dir), "start_7_"); n != 0 {
		t.Fatalf("the task cancelled before it arrived ran %d times", n)
	}
}

// A worker's ledger of cancellations keeps a cancellation until newer
// ones push it out, however many times its task arrives (a copy
// delivered again is skipped too) and however late, and holds at most
// cancelLedgerMax entries: the job cancelled first goes first.
func TestCancelLedger(t *testing.T) {
	var l cancelLedger
	a, b := jobKey{"I", 1}, jobKey{"I", 2}
	if l.has(a, 0) {
		t.Fatal("an empty ledger has a task")
	}
	l.add(a, false, 3)
	l.add(a, false, 5)
	for range 2 {
		if !l.has(a, 3) || !l.has(a, 5) || l.has(a, 4) || l.has(b, 3) {
			t.Fatal("the ledger does not say which tasks were cancelled")
		}
	}
	l.add(a, true, 0)
	if !l.has(a, 4) || l.n != 1 {
		t.Fatalf("a job cancelled whole: has task 4 %v, %d entries", l.has(a, 4), l.n)
	}
	l.add(b, false, 1)
	for i := range cancelLedgerMax - 3 {
		l.add(jobKey{"J", uint64(i)}, true, 0)
	}
	if !l.has(a, 0) || !l.has(b, 1) || l.n != cancelLedgerMax {
		t.Fatalf("forgot within the bound (%d entries)", l.n)
	}
	l.add(jobKey{"K", 0}, true, 0)
	if l.has(a, 0) || !l.has(b, 1) || l.n != cancelLedgerMax {
		t.Fatalf("past the bound: the first job kept %v, %d entries", l.has(a, 0), l.n)
	}
	for i := range 3 * cancelLedgerMax {
		l.add(jobKey{"L", uint64(i)}, false, 7)
	}
	if l.n > cancelLedgerMax || len(l.jobs) > cancelLedgerMax || len(l.order)-l.head != len(l.jobs) || cap(l.order) > 4*cancelLedgerMax {
		t.Fatalf("unbounded: %d entries, %d jobs, %d in order, cap %d", l.n, len(l.jobs), len(l.order)-l.head, cap(l.order))
	}
	if !l.has(jobKey{"L", 3*cancelLedgerMax - 1}, 7) || l.has(b, 1) {
		t.Fatal("the newest cancellation was dropped, or an old one kept")
	}
}

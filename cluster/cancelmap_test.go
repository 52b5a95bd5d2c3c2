//go:build linux

package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
)

// cancelHold holds a pool's cancellation once the cluster's session has
// handled its first batch of cancelled tasks (purged them and told the
// workers to stop them: see cancelLoop), and holds the pool's
// cancellation of the call's other tasks, if it cancels them one by one
// (Session.Cancel), after the first; until release.
type cancelHold struct {
	stopped chan struct{} // closed once cancelLoop handled its first batch
	held    chan struct{}
	release func()
}

// holdCancels sets the hooks of a cancelHold. Called before the cluster
// starts, so that its hooks are reset once the cluster's pools are
// closed.
func holdCancels(t *testing.T) *cancelHold {
	h := &cancelHold{stopped: make(chan struct{}), held: make(chan struct{})}
	var first, rel sync.Once
	h.release = func() { rel.Do(func() { close(h.held) }) }
	testHookCancelDone = func(uint64, int) {
		first.Do(func() {
			close(h.stopped)
			<-h.held
		})
	}
	t.Cleanup(func() { testHookCancelDone = nil })
	return h
}

// heldCluster opens its pools on c with sessions whose Cancel, of one
// task, is held by h: the first Cancel of one of the first running
// tasks submitted (those a worker of running slots takes first) goes
// through and then waits for h's release, any other waits for it before
// it goes through. So a pool that cancels a call's tasks one by one has
// only that running task cancelled while h holds.
type heldCluster struct {
	c       *Cluster
	h       *cancelHold
	running int

	mu        sync.Mutex
	submitted []*clusterhook.Task
	passed    bool
}

func (hc *heldCluster) OpenPool(cfg clusterhook.Config) (clusterhook.Session, error) {
	s, err := hc.c.OpenPool(cfg)
	if err != nil {
		return nil, err
	}
	return heldSession{s, hc}, nil
}

type heldSession struct {
	clusterhook.Session
	hc *heldCluster
}

func (s heldSession) Submit(ts []*clusterhook.Task) error {
	s.hc.mu.Lock()
	s.hc.submitted = append(s.hc.submitted, ts...)
	s.hc.mu.Unlock()
	return s.Session.Submit(ts)
}

func (s heldSession) Cancel(t *clusterhook.Task) {
	hc := s.hc
	hc.mu.Lock()
	pass := !hc.passed && slices.Contains(hc.submitted[:min(hc.running, len(hc.submitted))], t)
	hc.passed = hc.passed || pass
	hc.mu.Unlock()
	if !pass {
		<-hc.h.held
	}
	s.Session.Cancel(t)
	<-hc.h.held
}

// checkNoQueuedStart runs once the first running task of a cancelled
// call was told to stop, while the pool's cancellation is held (see
// cancelHold): it waits until that task's slot is free (its task
// recorded its cancellation) and asks for another task, with nothing
// left for it in the stream, and checks meanwhile that no other task
// starts than the running ones: a queued task of the call that was
// still in the stream, and not in the worker's ledger of cancellations,
// would start in that slot.
func checkNoQueuedStart(t *testing.T, c *Cluster, hold *cancelHold, dir string, running int) {
	t.Helper()
	bound := testCtx(t, 30*time.Second)
	select {
	case <-hold.stopped:
	case <-bound.Done():
		t.Fatal("the cancellation was not handled in 30 s")
	}
	durable := taskDurable(c.opts.Pool, clusterhook.Fingerprint())
	for {
		lines := records(t, dir)
		if n := count(lines, "start_"); n > running {
			t.Fatalf("a queued task started in the slot that the cancellation freed: %v", lines)
		}
		if count(lines, "cancel_") > 0 {
			ci, err := c.conn.js.Consumer(bound, taskStream, durable)
			if err != nil {
				t.Fatal(err)
			}
			info, err := ci.Info(bound)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumWaiting > 0 && info.NumPending == 0 {
				return // the freed slot waits, and nothing is left for it
			}
		}
		if bound.Err() != nil {
			t.Fatalf("no slot was freed, or a task of the call stayed queued: %v", lines)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// heldPool starts a cluster, a submit-only pool on it whose
// cancellations a cancelHold holds, and a remote worker of 2 slots that
// records in dir.
func heldPool(t *testing.T) (*Cluster, *mp.Pool, *cancelHold, string) {
	t.Helper()
	hold := holdCancels(t)
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: &heldCluster{c: c, h: hold, running: 2}, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(t, pool) })
	t.Cleanup(hold.release) // before the pool closes, if the test fails
	startWorker(t, c, "2", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	bound := testCtx(t, 30*time.Second)
	for pool.Processes() != 2 { // the pool heard the worker (an Imap's window is 2*Processes+2)
		if bound.Err() != nil {
			t.Fatal("the pool did not hear the worker")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c, pool, hold, dir
}

// longSleeps returns n sleepy items of ids 0..n-1 that take 20 s.
func longSleeps(n int) [][2]int {
	items := make([][2]int, n)
	for i := range items {
		items[i] = [2]int{i, 20000}
	}
	return items
}

// A Map's ctx cancelled while 2 of its 20 tasks run, 18 queued: no slot
// freed by stopping a running one takes a queued one. On the old code the
// pool cancelled the tasks one by one, and the session purged and
// stopped the first (running) one before the others' cancellation came:
// its slot took the next queued task and ran it.
func TestCancelMapQueuedNeverStart(t *testing.T) {
	c, pool, hold, dir := heldPool(t)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	res := sleepy.MapAsync(ctx, pool, longSleeps(20), 1)
	awaitStarts(t, dir, 2)
	awaitStreamMsgs(t, c, 20)
	cancel()
	if _, err := res.Get(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	checkNoQueuedStart(t, c, hold, dir, 2)
	hold.release()
	awaitStopped(t, c, dir, 2)
}

// An Imap's ctx cancelled while 2 of its chunks run and 4 are queued
// (its window of 6): no slot freed by stopping a running chunk takes a
// queued one. Each chunk is a job of its own: the pool cancels them
// together and the session purges them all before it stops any (see
// stopJobs). On the old code each chunk's cancellation went on its own
// (a watch of ctx per chunk): the first running chunk was purged and
// stopped while the queued ones were not cancelled yet, and its slot
// took the next one.
func TestCancelImapQueuedNeverStart(t *testing.T) {
	c, pool, hold, dir := heldPool(t)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	done := make(chan error, 1)
	go func() {
		var err error
		for _, e := range sleepy.Imap(ctx, pool, slices.Values(longSleeps(20)), 1) {
			if e != nil {
				err = e
				break
			}
		}
		done <- err
	}()
	awaitStarts(t, dir, 2)
	awaitStreamMsgs(t, c, 6)
	cancel()
	checkNoQueuedStart(t, c, hold, dir, 2)
	hold.release()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	awaitStopped(t, c, dir, 2)
}

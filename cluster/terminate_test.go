//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// Terminate with calls in flight at once, on a worker of 2 slots: two
// calls running (1 and 2), one queued (3), and a Map (job 4) whose
// chunks 10-12 are queued, 13 is being published (held in its
// publication) and 14-15 are not published yet. Every call returns
// ErrPoolTerminated, the Map's too while its chunk's publication is held
// (before the fix, MapAsync returned only once that publication was
// out); every queued task is purged before any cancellation goes out
// (checked at each purge: the cancellations the pool sent so far are
// flushed to a peer that listens, which must have heard none); the
// running tasks see their ctx cancelled; the chunk held in its
// publication is published, then purged by its publisher; the chunks
// after it are never published; Join returns; and no task but the two
// running ever starts (the slots that the cancellations free wait, in
// testHookRan, until the test has seen the stream empty).
func TestTerminateCallsInFlight(t *testing.T) { terminateCallsInFlight(t, false) }

// As TestTerminateCallsInFlight, with the first purge failing (as when
// the server does not answer): the cancellations go out all the same,
// the purge is tried again and removes every queued task (the worker's
// slots freed by the cancellations wait meanwhile), none of which ever
// starts.
func TestTerminateCallsInFlightPurgeRetried(t *testing.T) { terminateCallsInFlight(t, true) }

func terminateCallsInFlight(t *testing.T, failFirst bool) {
	dir := t.TempDir()
	t.Setenv(envDir, dir) // for the worker's local processes
	c := startCluster(t, Options{})
	nc := peerConn(t, c)
	cancels := listen(t, nc, cancelPrefix+c.opts.Pool)

	const mapJob, heldIdx = 4, 3
	var (
		mu        sync.Mutex
		problems  []string
		published = map[[2]uint64]bool{}
	)
	problem := func(format string, a ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	inPublication := make(chan struct{})
	releasePublication := make(chan struct{})
	var holdOnce, releaseOnce sync.Once
	releasePub := func() { releaseOnce.Do(func() { close(releasePublication) }) }
	t.Cleanup(releasePub)
	testHookBeforePublish = func(job uint64, idx int) {
		mu.Lock()
		published[[2]uint64{job, uint64(idx)}] = true
		mu.Unlock()
		if job == mapJob && idx == heldIdx {
			holdOnce.Do(func() {
				close(inPublication)
				select {
				case <-releasePublication:
				case <-time.After(30 * time.Second):
					problem("the publication was held 30 s")
				}
			})
		}
	}
	var terminating atomic.Bool
	var purges atomic.Int32
	latePurged := make(chan struct{})
	var lateOnce sync.Once
	lateSuffix := "-" + strconv.Itoa(mapJob) + "." + strconv.Itoa(heldIdx)
	testHookPurge = func(subject string) error {
		n := purges.Add(1)
		if terminating.Load() {
			// Every cancellation the pool sent so far reaches the peer
			// before its flush returns.
			if err := errors.Join(c.conn.nc.Flush(), nc.Flush()); err != nil {
				problem("flush: %v", err)
			}
			if len(cancels) > 0 {
				problem("a cancellation went out before the purge of %s", subject)
			}
		}
		if strings.HasSuffix(subject, lateSuffix) {
			lateOnce.Do(func() { close(latePurged) })
		}
		if failFirst && n == 1 {
			return errors.New("test: the purge is lost")
		}
		return nil
	}
	// Once gated, a worker's slot that ends a task waits before it asks
	// for another, until release.
	var gated atomic.Bool
	slotsFree := make(chan struct{})
	var freeOnce sync.Once
	release := func() { freeOnce.Do(func() { close(slotsFree) }) }
	t.Cleanup(release)
	testHookRan = func() {
		if gated.Load() {
			<-slotsFree
		}
	}
	t.Cleanup(func() { testHookBeforePublish, testHookPurge, testHookRan = nil, nil, nil })

	ctx, cancel := context.WithCancel(testCtx(t, 90*time.Second))
	wdone := make(chan error, 1)
	go func() {
		wdone <- RunWorker(ctx, WorkerOptions{URL: c.URL(), Pool: c.opts.Pool, Local: mp.PoolOptions{Processes: 2}})
	}()
	t.Cleanup(func() {
		release()
		cancel()
		if err := <-wdone; err != nil {
			t.Errorf("RunWorker: %v", err)
		}
	})
	awaitWorkers(t, c, 1)
	pool := submitOnly(t, c, mp.PoolOptions{})

	running := []*mp.AsyncResult[int]{sleepy.ApplyAsync(ctx, pool, [2]int{1, 60000}, nil, nil),
		sleepy.ApplyAsync(ctx, pool, [2]int{2, 60000}, nil, nil)}
	awaitStarts(t, dir, 2) // the worker's slots are taken
	queued := sleepy.ApplyAsync(ctx, pool, [2]int{3, 0}, nil, nil)
	awaitStreamMsgs(t, c, 3)
	mapped := make(chan *mp.AsyncResult[[]int], 1)
	go func() {
		mapped <- sleepy.MapAsync(ctx, pool, [][2]int{{10, 0}, {11, 0}, {12, 0}, {13, 0}, {14, 0}, {15, 0}}, 1)
	}()
	select {
	case <-inPublication:
	case <-ctx.Done():
		t.Fatal("the Map's chunk never came to its publication")
	}
	awaitStreamMsgs(t, c, 6) // 1 and 2 running, 3 and 10-12 queued

	gated.Store(true)
	terminating.Store(true)
	pool.Terminate()
	terminating.Store(false)
	if !failFirst {
		info, err := c.conn.tasks.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			t.Errorf("%d tasks left in the stream once Terminate returned", info.State.Msgs)
		}
	}
	for i, r := range append(running, queued) {
		if _, err := r.Get(testCtx(t, 10*time.Second)); !errors.Is(err, mp.ErrPoolTerminated) {
			t.Errorf("call %d: %v, want ErrPoolTerminated", i+1, err)
		}
	}
	var m *mp.AsyncResult[[]int]
	select {
	case m = <-mapped:
	case <-time.After(10 * time.Second):
		t.Fatal("MapAsync still submitting 10 s after Terminate, a chunk held in its publication")
	}
	if _, err := m.Get(testCtx(t, 10*time.Second)); !errors.Is(err, mp.ErrPoolTerminated) {
		t.Errorf("the Map (one chunk held in its publication): %v, want ErrPoolTerminated", err)
	}
	for _, id := range []string{"cancel_1_", "cancel_2_"} {
		awaitTrue(t, func() bool { return count(records(t, dir), id) == 1 },
			func() string { return fmt.Sprintf("no %s: %v", id, records(t, dir)) })
	}
	if failFirst {
		awaitStreamMsgs(t, c, 0) // purged by the retry, the slots waiting
		if n := purges.Load(); n < 2 {
			t.Errorf("%d purges tried, want 2 at least (the first failed)", n)
		}
	}

	releasePub()
	select {
	case <-latePurged:
	case <-time.After(10 * time.Second):
		t.Fatal("the chunk published as Terminate came was not purged by its publisher")
	}
	awaitStreamMsgs(t, c, 0)
	release() // the slots ask for tasks: the stream has none of the pool's
	if err := pool.Join(testCtx(t, 30*time.Second)); err != nil {
		t.Fatalf("Join: %v", err)
	}
	// No task can start from now on: the stream holds none of the
	// pool's, and the pool publishes no more.
	lines := records(t, dir)
	if n := count(lines, "start_"); n != 2 || count(lines, "start_1_") != 1 || count(lines, "start_2_") != 1 {
		t.Errorf("tasks started: %v, want 1 and 2 only", lines)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, idx := range []uint64{4, 5} {
		if published[[2]uint64{mapJob, idx}] {
			t.Errorf("the Map's chunk %d, not published when Terminate came, was published", idx)
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

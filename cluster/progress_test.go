//go:build linux

package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// TestFirstProgressWithinAckWait: a worker that started before its
// pool's consumer existed did not know the ack wait, and its progress
// reports paused a second at a time; once the consumer is found, a task
// it takes must be reported within a third of the ack wait, not at the
// end of that pause. The test holds the progress reports at the start of
// a pause of a second until the task has started, so that the pause
// runs from then: with an ack wait of 600 ms the task was given to the
// worker's free slot and ran twice.
func TestFirstProgressWithinAckWait(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envDir, dir) // for the worker's local processes
	c := startCluster(t, Options{AckWait: 600 * time.Millisecond})
	paused := make(chan chan struct{})
	testHookProgressPause = func(d time.Duration) {
		if d < time.Second {
			return
		}
		release := make(chan struct{})
		select {
		case paused <- release:
			<-release
		case <-time.After(10 * time.Second):
		}
	}
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	done := make(chan error, 1)
	go func() {
		done <- RunWorker(ctx, WorkerOptions{URL: c.URL(), Pool: c.opts.Pool, Local: mp.PoolOptions{Processes: 2}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWorker: %v", err)
		}
		testHookProgressPause = nil
	})
	var release chan struct{}
	select {
	case release = <-paused: // the worker's reports pause, not knowing the ack wait
	case <-ctx.Done():
		t.Fatal("the worker's progress reports never paused for a second")
	}
	pool := submitOnly(t, c, mp.PoolOptions{})
	res := sleepy.MapAsync(ctx, pool, [][2]int{{1, 2000}}, 1)
	for count(records(t, dir), "start_1_") == 0 {
		if ctx.Err() != nil {
			t.Fatal("the task never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	out, err := res.Get(ctx)
	if err != nil || fmt.Sprint(out) != "[1]" {
		t.Fatalf("got %v, %v", out, err)
	}
	if n := count(records(t, dir), "start_1_"); n != 1 {
		t.Fatalf("the task started %d times: its progress was not reported within the ack wait", n)
	}
}

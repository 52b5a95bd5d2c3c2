//go:build linux

package cluster

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
)

// whose returns the pid of the worker process whose local child runs it.
var whose = mp.Register("cluster.test.whose", func(int) (int, error) { return os.Getppid(), nil })

// awaitWaiting waits until the tasks' consumer holds n requests for a
// task, or fails the test.
func awaitWaiting(t *testing.T, ctx context.Context, cons jetstream.Consumer, n int) {
	t.Helper()
	for {
		info, err := cons.Info(ctx)
		if err == nil && info.NumWaiting == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d requests for a task: %v, %v", n, info, err)
		case <-time.After(time.Millisecond):
		}
	}
}

// A lone task goes to the pool's warm worker (see warmth) even when
// another worker's request for a task has waited longer, which the
// server would serve first: calls one at a time stay on one worker
// instead of alternating between two. Each call waits until both
// workers' requests are at the server, so that the server chooses.
func TestLoneTaskGoesToWarmWorker(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1")
	startWorker(t, c, "1")
	awaitWorkers(t, c, 2)
	ctx := testCtx(t, 60*time.Second)
	cons, err := c.conn.js.Consumer(ctx, taskStream, taskDurable(c.opts.Pool, clusterhook.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	const calls = 12
	var ran []int
	for i := range calls {
		awaitWaiting(t, ctx, cons, 2)
		pid, err := whose.Apply(ctx, pool, i)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		ran = append(ran, pid)
	}
	// The first call makes its worker warm; the second goes to the other
	// worker (its request waited longer), naming the warm one; the third
	// to the warm one, whose requests then come first.
	for i, pid := range ran[2:] {
		if pid != ran[2] {
			t.Fatalf("call %d ran in worker %d, call 2 in %d: the calls' workers %v", i+2, pid, ran[2], ran)
		}
	}
	t.Logf("the calls' workers: %v", ran)
}

// A worker asks for its next task as it sends a result directly, from
// the goroutine that has the result, rather than once the slot's own
// goroutine runs again: the request reaches the server before the
// pool's next call, and the call goes to the warm worker. The slot's
// goroutine is held after its first task here; its next request comes
// all the same.
func TestNextRequestWithResult(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookRan = func() { once.Do(func() { close(held); <-release }) }
	t.Cleanup(func() { testHookRan = nil })
	c := startCluster(t, Options{})
	requests := make(chan *nats.Msg, 16)
	sub, err := c.conn.nc.ChanSubscribe("$JS.API.CONSUMER.MSG.NEXT."+taskStream+".>", requests)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.conn.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	pool := localWorkerPool(t, c)
	defer close(release)
	ctx := testCtx(t, 30*time.Second)
	applyDoubles(t, ctx, pool, 1)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the slot did not finish its task")
	}
	for n := 0; n < 2; n++ { // the first task's request, then the next's
		select {
		case <-requests:
		case <-ctx.Done():
			t.Fatalf("%d requests for a task, want 2 while the slot is held after its first task", n)
		}
	}
}

// The warm worker is the first to send a result, and changes only after
// warmAfter results in a row from other workers: one task taken by
// another worker, while the warm one's request was not at the server
// yet, leaves it warm.
func TestWarmthHysteresis(t *testing.T) {
	var w warmth
	steps := []struct{ ran, want string }{
		{"", ""}, // a worker that does not say
		{"a", "a"},
		{"b", "a"}, {"a", "a"}, // one miss: no switch
		{"b", "a"}, {"c", "c"}, // two in a row: the last one
		{"", "c"},
	}
	for i, s := range steps {
		w.ran(s.ran)
		if got := w.current(); got != s.want {
			t.Fatalf("step %d (result of %q): warm %q, want %q", i, s.ran, got, s.want)
		}
	}
}

// A worker follows the tasks' consumer's priority policy, which each
// pool that opens sets: requests without a priority on a consumer made
// by a pool of an earlier version (or a server without priorities), and
// with one again once a pool of this version has made it prioritized
// (the server refuses a request without one then: the worker looks the
// consumer up again).
func TestWorkerFollowsPriorityPolicy(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	ctx := testCtx(t, 60*time.Second)
	name := taskDurable(c.opts.Pool, clusterhook.Fingerprint())
	setPolicy := func(prioritized bool) {
		t.Helper()
		cons, err := c.conn.js.Consumer(ctx, taskStream, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := cons.CachedInfo().Config
		cfg.PriorityGroups, cfg.PriorityPolicy = nil, jetstream.PriorityPolicyNone
		if prioritized {
			cfg.PriorityGroups, cfg.PriorityPolicy = []string{taskGroup}, jetstream.PriorityPolicyPrioritized
		}
		if _, err := c.conn.js.UpdateConsumer(ctx, taskStream, cfg); err != nil {
			t.Fatal(err)
		}
	}
	setPolicy(false)
	startWorker(t, c, "1")
	awaitWorkers(t, c, 1)
	applyDoubles(t, ctx, pool, 3)
	setPolicy(true)
	applyDoubles(t, ctx, pool, 3)
}

// A result sent directly by a peer that names itself with an id of any
// length (a header of the message: another process's input) does not
// make the pool's warm worker: the pool names its warm worker on each
// task, and an id near the server's max payload made every task too
// large to publish, for good (no result came to make another worker
// warm).
func TestWarmIgnoresOversizedWorkerID(t *testing.T) {
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1")
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 60*time.Second)
	s := sessionOf(t, c)
	nc := c.conn.nc
	big := &nats.Msg{Subject: directPrefix + s.inst, Header: nats.Header{}}
	big.Header.Set(workerHeader, strings.Repeat("x", int(nc.MaxPayload())-1024))
	if err := nc.PublishMsg(big); err != nil {
		t.Fatal(err)
	}
	// The pool answers this one after it has handled the one before.
	if _, err := nc.RequestWithContext(ctx, directPrefix+s.inst, []byte("junk")); err != nil {
		t.Fatal(err)
	}
	if w := s.warm.current(); len(w) > maxWorkerID {
		t.Fatalf("the warm worker is a peer's id of %d bytes", len(w))
	}
	applyDoubles(t, ctx, pool, 3)
}

// A pool acknowledges, for a result sent directly, only a delivery of
// its own tasks' consumer: the subject to acknowledge comes from another
// process (a header), and one of another stream or consumer (a queue of
// a manager, another pool's tasks) would have that message taken for
// good. The pool answers without saying it acknowledged: the worker does.
func TestDirectAcksOnlyOwnTasks(t *testing.T) {
	c := startCluster(t, Options{})
	submitOnly(t, c, mp.PoolOptions{})
	ctx := testCtx(t, 30*time.Second)
	s := sessionOf(t, c)
	for _, to := range []string{
		jsAckPrefix + "MP_OTHER.cons.1.1.1.0.0",
		jsAckPrefix + taskStream + ".other.1.1.1.0.0",
	} {
		m := &nats.Msg{Subject: directPrefix + s.inst, Data: []byte("junk"), Header: nats.Header{}}
		m.Header.Set(ackToHeader, to)
		reply, err := c.conn.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if string(reply.Data) == string(answerAcked) {
			t.Errorf("the pool acknowledged %s for a peer", to)
		}
	}
}

//go:build linux

package cluster

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
)

// gated, a target that does not see its ctx, records its start, waits
// while the file hold_ID is in the test's directory (a minute at most),
// then records its end.
var gated = mp.Register("cluster.test.gated", func(id int) (int, error) {
	record("start", id)
	hold := filepath.Join(os.Getenv(envDir), "hold_"+strconv.Itoa(id))
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(hold); os.IsNotExist(err) {
			break
		}
	}
	record("end", id)
	return id, nil
})

// An Imap of a target that does not see its ctx, whose loop stops after
// its first result while its second chunk runs on the only worker (one
// slot) and two more are queued behind it: the running chunk runs to its
// end (not stopped), the queued ones never start. On the old code the
// chunks in flight were only withdrawn, which fails once they are
// published: they stayed queued, and ran after the running one. The
// same for ImapUnordered.
func TestImapStopDropsQueuedChunks(t *testing.T) {
	t.Run("Imap", func(t *testing.T) { testImapStop(t, gated.Imap) })
	t.Run("ImapUnordered", func(t *testing.T) { testImapStop(t, gated.ImapUnordered) })
}

func testImapStop(t *testing.T, imap func(context.Context, *mp.Pool, iter.Seq[int], int, ...mp.MapOption) iter.Seq2[int, error]) {
	dir := t.TempDir()
	c := startCluster(t, Options{})
	pool := submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	awaitTrue(t, func() bool { return pool.Processes() == 1 }, func() string {
		return "the pool did not hear the worker's slot (an Imap's window is 2*Processes+2: 4)"
	})
	hold := filepath.Join(dir, "hold_1")
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 60*time.Second)
	items := make([]int, 10)
	for i := range items {
		items[i] = i
	}
	got := 0
	for v, err := range imap(ctx, pool, slices.Values(items), 1) {
		if err != nil || v != 0 {
			t.Fatalf("first result: %v, %v", v, err)
		}
		got++
		// Chunk 1 runs (held), chunks 2 and 3 are queued behind it.
		awaitStarts(t, dir, 2)
		awaitStreamMsgs(t, c, 3)
		break
	}
	if got != 1 {
		t.Fatalf("%d results before the break", got)
	}
	// The queued chunks are purged, and the running one with them from
	// the stream (it still runs). Not fatal on the old code, where they
	// stay: the checks below show them run.
	bound := testCtx(t, 10*time.Second)
	for msgs := uint64(3); msgs != 0; time.Sleep(2 * time.Millisecond) {
		info, err := c.conn.tasks.Info(bound)
		if err != nil {
			t.Errorf("after the break: %d tasks left in the stream (%v)", msgs, err)
			break
		}
		msgs = info.State.Msgs
	}
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	awaitTrue(t, func() bool { return count(records(t, dir), "end_1_") == 1 }, func() string {
		return fmt.Sprint("the running chunk did not end: ", records(t, dir))
	})
	awaitIdleWorker(t, c)
	lines := records(t, dir)
	if n := count(lines, "start_"); n != 2 || count(lines, "start_2_") != 0 || count(lines, "start_3_") != 0 {
		t.Errorf("queued chunks started after the break: %v", lines)
	}
	if n := count(lines, "end_"); n != 2 {
		t.Errorf("%d chunks ended, want 2 (the first, and the one running at the break): %v", n, lines)
	}
}

// awaitIdleWorker waits, 10 s at most, until the tasks' consumer has no
// task pending or unacknowledged and a worker's request for a task
// waits: a task left in the stream would have been given to it.
func awaitIdleWorker(t *testing.T, c *Cluster) {
	t.Helper()
	bound := testCtx(t, 10*time.Second)
	cons, err := c.conn.js.Consumer(bound, taskStream, taskDurable(c.opts.Pool, clusterhook.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	var state string
	awaitTrue(t, func() bool {
		info, err := cons.Info(bound)
		if err != nil {
			t.Fatal(err)
		}
		state = fmt.Sprintf("pending %d, unacknowledged %d, waiting %d", info.NumPending, info.NumAckPending, info.NumWaiting)
		return info.NumPending == 0 && info.NumAckPending == 0 && info.NumWaiting > 0
	}, func() string { return "the worker is not idle: " + state })
}

// A worker that hears a drop records it in its ledger, so that it skips
// the task if it takes it later, and stops no running task of it; a stop
// stops them. A drop starts with another version byte than a stop: a
// worker that predates drops (it parses version protoVersion only)
// ignores it rather than stop the running tasks.
func TestWorkerDropStopsNone(t *testing.T) {
	drop := cancelMsg{Inst: "I", Job: 3, All: true, Drop: true}
	b := drop.appendTo(nil)
	if b[0] == protoVersion {
		t.Fatal("a drop starts as a stop: an older worker would stop its running tasks")
	}
	var back cancelMsg
	if err := back.parse(b); err != nil || back != drop {
		t.Fatalf("drop: %+v, %v", back, err)
	}
	n := &node{running: map[jobKey][]*runningTask{}}
	k := jobKey{"I", 3}
	stopped := 0
	n.running[k] = []*runningTask{{idx: 1, cancel: func() { stopped++ }}}
	n.onCancel(&nats.Msg{Data: b})
	if stopped != 0 {
		t.Fatal("a drop stopped a running task")
	}
	if !n.cancelled.has(k, 5) {
		t.Fatal("a drop is not in the ledger: a task taken later would run")
	}
	stop := cancelMsg{Inst: "I", Job: 3, Idx: 1}
	n.onCancel(&nats.Msg{Data: stop.appendTo(nil)})
	if stopped != 1 {
		t.Fatalf("a stop stopped %d running tasks, want 1", stopped)
	}
}

//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// imapOrder is sleepy's Imap or ImapUnordered.
type imapOrder struct {
	name string
	imap func(context.Context, *mp.Pool, iter.Seq[[2]int], int, ...mp.MapOption) iter.Seq2[int, error]
}

var imapOrders = []imapOrder{{"Imap", sleepy.Imap}, {"ImapUnordered", sleepy.ImapUnordered}}

// yielded is what an Imap loop's body saw once.
type yielded struct {
	v   int
	err error
}

func (y yielded) String() string { return fmt.Sprintf("(%d, %v)", y.v, y.err) }

// imapOnOneSlot starts a cluster and a remote worker of one process, and
// a submit-only pool on it whose window (2*Processes+2) is four chunks.
func imapOnOneSlot(t *testing.T) (dir string, c *Cluster, pool *mp.Pool) {
	dir = t.TempDir()
	c = startCluster(t, Options{})
	pool = submitOnly(t, c, mp.PoolOptions{})
	startWorker(t, c, "1", envDir+"="+dir)
	awaitWorkers(t, c, 1)
	awaitTrue(t, func() bool { return pool.Processes() == 1 }, func() string {
		return "the pool did not hear the worker's slot"
	})
	return dir, c, pool
}

// checkImapEnd checks that got is the ids 1..n, in order, then (0, an
// error matching want) once.
func checkImapEnd(t *testing.T, got []yielded, n int, want error) {
	t.Helper()
	ok := len(got) == n+1 && errors.Is(got[n].err, want) && got[n].v == 0
	for i := 0; ok && i < n; i++ {
		ok = got[i] == yielded{i + 1, nil}
	}
	if !ok {
		t.Fatalf("the loop saw %v, want the ids 1 to %d, then (0, %v) once", got, n, want)
	}
}

// The loop's ctx ends, or the pool is terminated (Terminate, or its
// cluster's Close), while the second of
// three chunks runs on the only slot and the third is queued: the loop
// yields the first chunk's results, then ctx.Err() (ErrPoolTerminated)
// once, and ends. On the old code it yielded that error once per item of
// each chunk in flight.
//
// Terminate fails the chunks before it returns. For ctx, the loop's body
// waits until the running item has seen its ctx cancelled: the pool
// queues the chunks' stop for the session, then at once, on the same
// goroutine, fails them for the loop, while the stop reaches the worker
// only after a purge of the stream and a message; so the loop then finds
// them failed (on the old code: yielded them, item by item) rather than
// ctx's end. That is timing, not an order the code makes: the hook that
// the root package's test waits on (mp.OnImapChunk) is not exported to
// this package.
func TestImapCtxEndYieldsOnce(t *testing.T) {
	for _, o := range imapOrders {
		for _, n := range []int{1, 3} {
			for _, stop := range []string{"ctx", "Terminate", "ClusterClose"} {
				t.Run(fmt.Sprintf("%s/%s/chunksize%d", o.name, stop, n), func(t *testing.T) {
					testImapEnd(t, o, n, stop)
				})
			}
		}
	}
}

func testImapEnd(t *testing.T, o imapOrder, n int, stop string) {
	dir, c, pool := imapOnOneSlot(t)
	bound := testCtx(t, 60*time.Second)
	ctx, cancel := context.WithCancel(bound)
	defer cancel()
	// Chunks of n: ids 1..n quick; the first of the second (hang) waits
	// for its ctx (a minute at most); the others quick.
	hang := n + 1
	var items [][2]int
	for id := 1; id <= 3*n; id++ {
		ms := 0
		if id == hang {
			ms = 60_000
		}
		items = append(items, [2]int{id, ms})
	}
	var got []yielded
	for v, err := range o.imap(ctx, pool, slices.Values(items), n) {
		got = append(got, yielded{v, err})
		if len(got) > 3*n+1 {
			break
		}
		if len(got) != n {
			continue
		}
		started := fmt.Sprintf("start_%d_", hang)
		awaitTrue(t, func() bool { return count(records(t, dir), started) == 1 }, func() string {
			return fmt.Sprint("the second chunk did not start: ", records(t, dir))
		})
		switch stop {
		case "Terminate":
			pool.Terminate()
			continue
		case "ClusterClose":
			c.Close()
			continue
		}
		cancel()
		cancelled := fmt.Sprintf("cancel_%d_", hang)
		awaitTrue(t, func() bool { return count(records(t, dir), cancelled) == 1 }, func() string {
			return fmt.Sprint("the running item did not see its ctx cancelled: ", records(t, dir))
		})
	}
	if stop != "ctx" {
		checkImapEnd(t, got, n, mp.ErrPoolTerminated)
	} else {
		checkImapEnd(t, got, n, context.Canceled)
	}
}

// The pool is closed while the loop has chunks to submit: the loop
// yields the rest of the chunk it was yielding, then ErrPoolClosed once,
// when it next submits, and ends.
func TestImapPoolClosedYieldsOnce(t *testing.T) {
	for _, o := range imapOrders {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/chunksize%d", o.name, n), func(t *testing.T) {
				_, _, pool := imapOnOneSlot(t)
				ctx := testCtx(t, 60*time.Second)
				var items [][2]int
				for id := 1; id <= 10*n; id++ {
					items = append(items, [2]int{id, 0})
				}
				var got []yielded
				for v, err := range o.imap(ctx, pool, slices.Values(items), n) {
					got = append(got, yielded{v, err})
					if len(got) == 1 {
						pool.Close()
					}
					if len(got) > len(items) {
						break
					}
				}
				checkImapEnd(t, got, n, mp.ErrPoolClosed)
			})
		}
	}
}

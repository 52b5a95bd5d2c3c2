//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// An imapFunc is Imap or ImapUnordered of a target.
type imapFunc[A, R any] func(context.Context, *mp.Pool, iter.Seq[A], int, ...mp.MapOption) iter.Seq2[R, error]

// imapOrders are ctxStep's Imap and ImapUnordered.
var imapOrders = []struct {
	name string
	imap imapFunc[poolStep, string]
}{{"Imap", ctxStep.Imap}, {"ImapUnordered", ctxStep.ImapUnordered}}

// yielded is what an Imap loop's body saw once.
type yielded struct {
	v   string
	err error
}

func (y yielded) String() string { return fmt.Sprintf("(%q, %v)", y.v, y.err) }

// imapStopSteps returns three chunks of n steps for a pool of one
// worker: n quick ones (q0...); one that hangs until its ctx is
// cancelled (h), then n-1 quick ones (r1...); n quick ones (s0...). The
// loop holds all three at once (its window is 4 chunks), so that its
// seq is over when the second runs.
func imapStopSteps(dir string, n int) []poolStep {
	var steps []poolStep
	for i := range n {
		steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint("q", i)})
	}
	steps = append(steps, poolStep{Dir: dir, ID: "h", Hang: true})
	for i := 1; i < n; i++ {
		steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint("r", i)})
	}
	for i := range n {
		steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint("s", i)})
	}
	return steps
}

// runImapStop runs imap over imapStopSteps(n) on a pool of one worker;
// once the loop has yielded the first chunk's n results and the second
// chunk runs, stop ends ctx or the pool, and the loop's body waits until
// the two chunks in flight have been handed to the loop (their outcome
// is then what the loop finds first, whatever the goroutines' timing).
// It returns what the loop yielded.
func runImapStop(t *testing.T, imap imapFunc[poolStep, string], n int, stop func(cancel context.CancelFunc, pool *mp.Pool)) []yielded {
	dir := t.TempDir()
	pool := newPool(t, mp.PoolOptions{Processes: 1, CancelGrace: time.Minute})
	bound := ctxTimeout(t, 30*time.Second)
	ctx, cancel := context.WithCancel(bound)
	defer cancel()
	handed := make(chan struct{}, 16)
	var got []yielded
	for v, err := range imap(ctx, pool, slices.Values(imapStopSteps(dir, n)), n) {
		got = append(got, yielded{v, err})
		if len(got) > 3*n+1 {
			break // more than every item and an error: the check below says so
		}
		if len(got) != n {
			continue
		}
		awaitFile(t, bound, dir, "started-h")
		mp.OnImapChunk(t, func() { handed <- struct{}{} })
		stop(cancel, pool)
		for range 2 {
			select {
			case <-handed:
			case <-bound.Done():
				t.Fatal("the chunks in flight were not handed to the loop")
			}
		}
	}
	return got
}

// checkYielded checks that got is the results of the quick steps q0 to
// q(n-1), in order, then (zero, an error matching want) once.
func checkYielded(t *testing.T, got []yielded, n int, want error) {
	t.Helper()
	var exp []yielded
	for i := range n {
		exp = append(exp, yielded{fmt.Sprint("done q", i), nil})
	}
	exp = append(exp, yielded{"", want})
	ok := len(got) == len(exp)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].v == exp[i].v && (exp[i].err == nil) == (got[i].err == nil) && errors.Is(got[i].err, exp[i].err)
	}
	if !ok {
		t.Fatalf("the loop saw %v, want %v", got, exp)
	}
}

// The loop's ctx ends while a chunk runs and another is queued behind
// it: the loop yields the results it had, then ctx.Err() once, and ends;
// the items of the chunks cancelled yield nothing (they were yielded
// ctx.Err() once per item and chunk on the old code).
func TestImapCtxEndYieldsOnce(t *testing.T) {
	for _, o := range imapOrders {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/chunksize%d", o.name, n), func(t *testing.T) {
				got := runImapStop(t, o.imap, n, func(cancel context.CancelFunc, _ *mp.Pool) { cancel() })
				checkYielded(t, got, n, context.Canceled)
			})
		}
	}
}

// The loop's ctx ends while the first of two chunks runs and the second,
// on the other worker, is done and has reached the loop: ImapUnordered
// yields its results, then ctx.Err() once; Imap, whose turn for it has
// not come, yields ctx.Err() once only. On the old code the loop found
// the first chunk's failure and yielded ctx.Err() once per item of it,
// then (Imap) the second chunk's results after the error.
func TestImapCtxEndDropsChunkNotInTurn(t *testing.T) {
	for _, o := range imapOrders {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/chunksize%d", o.name, n), func(t *testing.T) {
				dir := t.TempDir()
				// A task timeout makes a worker take one task at a time:
				// each chunk runs on its own worker.
				pool := newPool(t, mp.PoolOptions{Processes: 2, TaskTimeout: time.Minute, CancelGrace: time.Minute})
				bound := ctxTimeout(t, 30*time.Second)
				ctx, cancel := context.WithCancel(bound)
				defer cancel()
				steps := []poolStep{{Dir: dir, ID: "h", Hang: true}}
				for i := 1; i < n; i++ {
					steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint("r", i)})
				}
				for i := range n {
					steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint("q", i)})
				}
				handed := make(chan struct{}, 16)
				// Called by the loop when a chunk succeeded: the second,
				// which it has, yielded or not, when the first fails.
				progress := mp.WithProgress(func(done, _ int) {
					awaitFile(t, bound, dir, "started-h")
					mp.OnImapChunk(t, func() { handed <- struct{}{} })
					cancel()
					select {
					case <-handed:
					case <-bound.Done():
						t.Error("the running chunk was not handed to the loop")
					}
				})
				var got []yielded
				for v, err := range o.imap(ctx, pool, slices.Values(steps), n, progress) {
					got = append(got, yielded{v, err})
				}
				if o.name == "Imap" {
					checkYielded(t, got, 0, context.Canceled)
				} else {
					checkYielded(t, got, n, context.Canceled)
				}
			})
		}
	}
}

// The pool is terminated while a chunk runs and another is queued
// behind it: the loop yields ErrPoolTerminated once and ends (it yielded
// it once per item and chunk on the old code).
func TestImapTerminateYieldsOnce(t *testing.T) {
	for _, o := range imapOrders {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/chunksize%d", o.name, n), func(t *testing.T) {
				got := runImapStop(t, o.imap, n, func(_ context.CancelFunc, pool *mp.Pool) { pool.Terminate() })
				checkYielded(t, got, n, mp.ErrPoolTerminated)
			})
		}
	}
}

// The pool is closed while the loop has chunks to submit: the loop
// yields the rest of the chunk it was yielding, then ErrPoolClosed once
// when it next submits, and ends. Closed once every chunk is submitted,
// the pool runs them, and the loop yields them all.
func TestImapPoolClosedYieldsOnce(t *testing.T) {
	for _, o := range imapOrders {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/chunksize%d", o.name, n), func(t *testing.T) {
				ctx := ctxTimeout(t, 30*time.Second)
				dir := t.TempDir()
				var steps []poolStep
				for i := range 10 * n {
					steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint("q", i)})
				}
				pool := newPool(t, mp.PoolOptions{Processes: 1})
				var got []yielded
				for v, err := range o.imap(ctx, pool, slices.Values(steps), n) {
					got = append(got, yielded{v, err})
					if len(got) == 1 {
						pool.Close()
					}
					if len(got) > len(steps) {
						break
					}
				}
				checkYielded(t, got, n, mp.ErrPoolClosed)

				pool = newPool(t, mp.PoolOptions{Processes: 1})
				got = got[:0]
				for v, err := range o.imap(ctx, pool, slices.Values(steps[:3*n]), n) {
					got = append(got, yielded{v, err})
					if len(got) == 1 {
						pool.Close()
					}
				}
				if len(got) != 3*n || slices.ContainsFunc(got, func(y yielded) bool { return y.err != nil }) {
					t.Fatalf("closed with every chunk submitted, the loop saw %v, want %d results", got, 3*n)
				}
			})
		}
	}
}

// ownCanceled, which sees its ctx, fails a negative item with the error
// of a ctx of its own that it cancelled: context.Canceled, as the ctx of
// a call that ended gives, but the loop's ctx is live.
var ownCanceled = mp.RegisterCtx("test.imapctx.ownCanceled", func(ctx context.Context, x int) (int, error) {
	if x < 0 {
		own, cancel := context.WithCancel(ctx)
		cancel()
		return 0, own.Err()
	}
	return 10 * x, nil
})

// checkOwnErrors checks that seq, an Imap of chunks of n by one worker
// (so in order, unordered too), yields want, where -1 stands for an
// error matching own and any other error fails the test.
func checkOwnErrors(t *testing.T, name string, seq iter.Seq2[int, error], n int, own error, want []int) {
	t.Helper()
	var got []int
	for v, err := range seq {
		switch {
		case errors.Is(err, own):
			v = -1
		case err != nil:
			t.Fatalf("%s by %d: %v", name, n, err)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s by %d yielded %v, want %v", name, n, got, want)
	}
}

// A target that returns context.Canceled itself fails its items as any
// error does: every item of its chunk yields it, and the loop goes on.
// Only the loop's own ctx's end yields once and ends it.
func TestImapTargetCanceledYieldsPerItem(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	items := []int{1, 2, -1, 3, 4, 5}
	for _, o := range []struct {
		name string
		imap imapFunc[int, int]
	}{{"Imap", ownCanceled.Imap}, {"ImapUnordered", ownCanceled.ImapUnordered}} {
		for _, c := range []struct {
			n    int
			want []int // -1: context.Canceled
		}{{1, []int{10, 20, -1, 30, 40, 50}}, {2, []int{10, 20, -1, -1, 40, 50}}, {3, []int{-1, -1, -1, 30, 40, 50}}} {
			checkOwnErrors(t, o.name, o.imap(ctx, pool, slices.Values(items), c.n), c.n, context.Canceled, c.want)
		}
	}
}

// gatedInit, a pool's initializer, waits (a minute at most) until the
// file dir/go exists, then fails.
var gatedInit = mp.RegisterProc("test.imapctx.gatedInit", func(dir string) error {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			break
		}
	}
	return errors.New("the initializer fails")
})

// A pool whose initializer fails once the loop has submitted all its
// chunks fails them all with that error: the loop yields it once and
// ends (once per chunk on the old code).
func TestImapBrokenPoolYieldsOnce(t *testing.T) {
	for _, o := range []struct {
		name string
		imap imapFunc[int, int]
	}{{"Imap", double.Imap}, {"ImapUnordered", double.ImapUnordered}} {
		t.Run(o.name, func(t *testing.T) {
			dir := t.TempDir()
			pool := newPool(t, mp.PoolOptions{Processes: 1, Initializer: mp.NewCall(gatedInit, dir)})
			ctx := ctxTimeout(t, 30*time.Second)
			// Three chunks (the window is four): the seq lets the
			// initializer fail once the loop has submitted them all.
			seq := func(yield func(int) bool) {
				for i := range 3 {
					if !yield(i) {
						return
					}
				}
				if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
					t.Error(err)
				}
			}
			var got []yielded
			for _, err := range o.imap(ctx, pool, seq, 1) {
				got = append(got, yielded{err: err})
			}
			if len(got) != 1 || got[0].err == nil || !strings.Contains(got[0].err.Error(), "the initializer fails") {
				t.Fatalf("the loop saw %v, want the initializer's error once", got)
			}
		})
	}
}

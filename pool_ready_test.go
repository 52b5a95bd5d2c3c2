//go:build linux

package mp_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// expiredCtx returns a ctx that is done already.
func expiredCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Issue 10 point 13: whatever is ready when a waiting call is made wins
// over a ctx done already, as Python's timeout=0 looks without waiting. A
// bare select would pick either at random: each call is made many times.
func TestPoolReadyWinsOverExpiredCtx(t *testing.T) {
	const tries = 200
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	res := double.ApplyAsync(context.Background(), pool, 4, nil, nil)
	if _, err := res.Get(ctx); err != nil {
		t.Fatal(err)
	}
	dead := expiredCtx()
	for range tries {
		if v, err := res.Get(dead); v != 8 || err != nil {
			t.Fatalf("AsyncResult.Get = %d, %v", v, err)
		}
		if err := res.Wait(dead); err != nil {
			t.Fatalf("AsyncResult.Wait = %v", err)
		}
	}
	pool.Close()
	if err := pool.Join(ctx); err != nil {
		t.Fatal(err)
	}
	for range tries {
		if err := pool.Join(dead); err != nil {
			t.Fatalf("Join of a pool joined already = %v", err)
		}
	}
}

func TestExecutorReadyWinsOverExpiredCtx(t *testing.T) {
	const tries = 200
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	futs := []*mp.Future[int]{double.Submit(context.Background(), ex, 1), double.Submit(context.Background(), ex, 2), double.Submit(context.Background(), ex, 3)}
	for _, f := range futs {
		if _, err := f.Result(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dead := expiredCtx()
	for range tries {
		if v, err := futs[0].Result(dead); v != 2 || err != nil {
			t.Fatalf("Future.Result = %d, %v", v, err)
		}
		if err := futs[1].Err(dead); err != nil {
			t.Fatalf("Future.Err = %v", err)
		}
		n := 0
		for f, err := range mp.AsCompleted(dead, futs...) {
			if err != nil || f == nil {
				t.Fatalf("AsCompleted yielded %v, %v after %d", f, err, n)
			}
			n++
		}
		if n != len(futs) {
			t.Fatalf("AsCompleted yielded %d futures", n)
		}
		for _, mode := range []mp.WaitMode{mp.AllCompleted, mp.FirstCompleted, mp.FirstException} {
			done, notDone, err := mp.WaitFutures(dead, futs, mode)
			if err != nil || len(notDone) != 0 || (mode == mp.AllCompleted && len(done) != len(futs)) {
				t.Fatalf("WaitFutures %v = %d done, %d not, %v", mode, len(done), len(notDone), err)
			}
		}
	}
	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		t.Fatal(err)
	}
	for range tries {
		if err := ex.Shutdown(dead, mp.ShutdownOptions{}); err != nil {
			t.Fatalf("Shutdown of an executor shut down already = %v", err)
		}
	}
}

// Imap yields the results that are in even once its ctx is done.
func TestPoolImapReadyWinsOverExpiredCtx(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1}) // Imap keeps 4 chunks in flight
	for round := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		var got []int
		for v, err := range double.Imap(ctx, pool, seqOf(4), 1) {
			if err != nil {
				t.Fatalf("round %d: after %v: %v", round, got, err)
			}
			got = append(got, v)
			if len(got) == 1 {
				// The one worker's results are delivered in order: once a
				// task given after the four is done, every result is in.
				// The ctx ends before the loop takes them.
				if _, err := double.Apply(context.Background(), pool, 0); err != nil {
					t.Fatal(err)
				}
				cancel()
			}
		}
		cancel()
		if len(got) != 4 || got[3] != 6 {
			t.Fatalf("round %d: Imap yielded %v", round, got)
		}
	}
}

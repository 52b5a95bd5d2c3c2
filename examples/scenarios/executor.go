//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/go-mp/mp"
)

// Executor is concurrent.futures.ProcessPoolExecutor: Submit returns a
// Future at once; SubmitMap yields results in order; AsCompleted yields
// futures as they finish; a done callback runs in the parent when its
// future is done; Shutdown waits for everything and refuses new work:
//
//	submit: square(7) = 49
//	a failed call: mp: error in process PoolWorker-1 (pid 1234): negative -1
//	map: 1 4 9 16 25 36 49 64
//	as completed: 5 futures, results 0 1 4 9 16
//	done callbacks ran for 5 futures
//	shutdown: every future done: true
//	submit after shutdown: mp: cannot schedule new futures after shutdown
func Executor(ctx context.Context, w io.Writer) error {
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 2})
	if err != nil {
		return err
	}
	defer func() {
		ex.Terminate()
		ex.Shutdown(context.Background(), mp.ShutdownOptions{})
	}()

	v, err := square.Submit(ctx, ex, 7).Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "submit: square(7) =", v)
	fmt.Fprintln(w, "a failed call:", square.Submit(ctx, ex, -1).Err(ctx))

	var mapped []int
	for v, err := range square.SubmitMap(ctx, ex, []int{1, 2, 3, 4, 5, 6, 7, 8}, 2) {
		if err != nil {
			return err
		}
		mapped = append(mapped, v)
	}
	fmt.Fprintln(w, "map:", join(mapped))

	var (
		mu   sync.Mutex
		seen int
	)
	var futures []*mp.Future[int]
	for i := range 5 {
		f := square.Submit(ctx, ex, i)
		f.AddDoneCallback(func(*mp.Future[int]) {
			mu.Lock()
			seen++
			mu.Unlock()
		})
		futures = append(futures, f)
	}
	var results []int
	for f, err := range mp.AsCompleted(ctx, futures...) {
		if err != nil {
			return err
		}
		v, err := f.Result(ctx)
		if err != nil {
			return err
		}
		results = append(results, v)
	}
	// In the order they finished, which varies: sorted to be printed.
	slices.Sort(results)
	fmt.Fprintf(w, "as completed: %d futures, results %s\n", len(results), join(results))

	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		return err
	}
	mu.Lock()
	fmt.Fprintf(w, "done callbacks ran for %d futures\n", seen)
	mu.Unlock()
	allDone := !slices.ContainsFunc(futures, func(f *mp.Future[int]) bool { return !f.Done() })
	fmt.Fprintln(w, "shutdown: every future done:", allDone)
	fmt.Fprintln(w, "submit after shutdown:", square.Submit(ctx, ex, 1).Err(ctx))
	return nil
}

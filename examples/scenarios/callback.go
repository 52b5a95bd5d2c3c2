//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/go-mp/mp"
)

// Callback is Python's apply_async(f, args, callback=collect): the task
// runs in a worker, its callback in the parent, when the result is back.
// Callbacks run one after another on the pool's goroutines, not the
// caller's, so what they share needs a lock, and they should be quick:
//
//	parent pid 1234
//	callbacks collected 10 results: [0 1 4 9 16 25 36 49 64 81]
//	every task ran in a worker, not in the parent: true
//	every callback ran in the parent: true
//	the error callback got: mp: error in process PoolWorker-2 (pid 1236): negative -1
func Callback(ctx context.Context, w io.Writer) error {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		return err
	}
	defer stopPool(pool)
	parent := os.Getpid()
	fmt.Fprintln(w, "parent pid", parent)

	var (
		mu         sync.Mutex
		collected  []int
		workerPids []int
		callerPids []int
		failures   []error
	)
	collect := func(r squared) {
		mu.Lock()
		defer mu.Unlock()
		collected = append(collected, r.Square)
		workerPids = append(workerPids, r.Pid)
		callerPids = append(callerPids, os.Getpid())
	}
	for i := range 10 {
		squareWhere.ApplyAsync(ctx, pool, i, collect, nil)
	}
	square.ApplyAsync(ctx, pool, -1, nil, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, err)
	})
	if err := closeAndJoin(ctx, pool); err != nil {
		return err
	}

	// Join has returned: every callback has run.
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(collected)
	fmt.Fprintf(w, "callbacks collected %d results: %v\n", len(collected), collected)
	fmt.Fprintln(w, "every task ran in a worker, not in the parent:", !slices.Contains(workerPids, parent))
	fmt.Fprintln(w, "every callback ran in the parent:", len(callerPids) == 10 && !slices.ContainsFunc(callerPids, func(pid int) bool { return pid != parent }))
	if len(failures) != 1 {
		return fmt.Errorf("%d error callbacks, want 1", len(failures))
	}
	fmt.Fprintln(w, "the error callback got:", failures[0])
	return nil
}

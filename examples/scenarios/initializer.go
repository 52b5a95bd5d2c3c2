//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/go-mp/mp"
)

// greeting is set in each worker by its initializer, before its first
// task; the parent's stays empty.
var greeting string

var setGreeting = mp.RegisterProc("scenarios.setGreeting", func(g string) error {
	greeting = g
	return nil
})

type greeted struct {
	Pid      int
	Greeting string
}

var greet = mp.Register("scenarios.greet", func(int) (greeted, error) {
	return greeted{Pid: mp.CurrentProcess().Pid, Greeting: greeting}, nil
})

// Initializer is Python's Pool(2, initializer=f, initargs=(...),
// maxtasksperchild=3): the initializer runs in every worker before its
// first task, and a worker is replaced by a fresh one (which runs the
// initializer too) after 3 tasks, the remedy for leaky native code. Nine
// tasks need at least three worker processes:
//
//	a pool of 2 workers, each replaced after 3 tasks
//	every task saw the initializer's greeting "hello": true
//	9 tasks ran in 4 worker processes, none ran more than 3: true
//	more worker processes than the pool's 2: true
func Initializer(ctx context.Context, w io.Writer) error {
	pool, err := mp.NewPool(mp.PoolOptions{
		Processes:        2,
		Initializer:      mp.NewCall(setGreeting, "hello"),
		MaxTasksPerChild: 3,
	})
	if err != nil {
		return err
	}
	defer stopPool(pool)
	fmt.Fprintf(w, "a pool of %d workers, each replaced after 3 tasks\n", pool.Processes())

	results, err := greet.Map(ctx, pool, make([]int, 9), 1)
	if err != nil {
		return err
	}
	perWorker := map[int]int{}
	allGreeted := true
	for _, r := range results {
		perWorker[r.Pid]++
		allGreeted = allGreeted && r.Greeting == "hello"
	}
	fmt.Fprintf(w, "every task saw the initializer's greeting %q: %v\n", "hello", allGreeted)
	counts := make([]int, 0, len(perWorker))
	for _, n := range perWorker {
		counts = append(counts, n)
	}
	fmt.Fprintf(w, "%d tasks ran in %d worker processes, none ran more than 3: %v\n",
		len(results), len(perWorker), slices.Max(counts) <= 3)
	fmt.Fprintf(w, "more worker processes than the pool's %d: %v\n", pool.Processes(), len(perWorker) > pool.Processes())
	return closeAndJoin(ctx, pool)
}

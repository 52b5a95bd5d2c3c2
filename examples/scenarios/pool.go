//go:build linux

package scenarios

import (
	"context"
	"fmt"

	"github.com/go-mp/mp"
)

// The pool scenarios follow the examples of Python's multiprocessing.Pool
// and concurrent.futures.ProcessPoolExecutor. Their tasks are registered
// functions; a pool runs them in worker processes and sends their results
// back, so, unlike the targets of the process scenarios, they report
// through their results and not over a Conn.

// square is the pool's hello world, f(x) = x*x. A negative x is an error,
// to show how a task's error comes back.
var square = mp.Register("scenarios.square", func(x int) (int, error) {
	if x < 0 {
		return 0, fmt.Errorf("negative %d", x)
	}
	return x * x, nil
})

// squared is x*x with the process that computed it.
type squared struct {
	X, Square int
	Pid       int
	Worker    string
}

var squareWhere = mp.Register("scenarios.squareWhere", func(x int) (squared, error) {
	me := mp.CurrentProcess()
	return squared{X: x, Square: x * x, Pid: me.Pid, Worker: me.Name}, nil
})

// stopPool makes sure a pool is not left running when a scenario returns
// early with an error; after Close and Join it does nothing.
func stopPool(pool *mp.Pool) {
	pool.Terminate()
	pool.Join(context.Background())
}

// closeAndJoin is the normal end of a pool: no more work, wait for the
// workers to finish what they have and exit.
func closeAndJoin(ctx context.Context, pool *mp.Pool) error {
	if err := pool.Close(); err != nil {
		return err
	}
	return pool.Join(ctx)
}

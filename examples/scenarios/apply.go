//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/go-mp/mp"
)

// Apply is Python's synchronous pool.apply: each call waits for its
// result, so the calls run one at a time, each in some worker:
//
//	square(10) = 100, computed by PoolWorker-1 (pid 1234)
//	apply waits for each result: 0 1 4 9 16
//	no call ran in the parent: true
func Apply(ctx context.Context, w io.Writer) error {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		return err
	}
	defer stopPool(pool)

	r, err := squareWhere.Apply(ctx, pool, 10)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "square(10) = %d, computed by %s (pid %d)\n", r.Square, r.Worker, r.Pid)

	inParent := r.Pid == os.Getpid()
	fmt.Fprint(w, "apply waits for each result:")
	for i := range 5 {
		r, err := squareWhere.Apply(ctx, pool, i)
		if err != nil {
			return err
		}
		inParent = inParent || r.Pid == os.Getpid()
		fmt.Fprint(w, " ", r.Square)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "no call ran in the parent:", !inParent)
	return closeAndJoin(ctx, pool)
}

//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
)

// ApplyAsyncCloseJoin is Python's
//
//	results = [pool.apply_async(f, (i,)) for i in range(10)]
//	pool.close()
//	pool.join()
//	print([r.get() for r in results])
//
// ApplyAsync returns at once; Close stops the pool from taking more work;
// Join waits until the workers have done what they were given and exited;
// then every result is ready:
//
//	submitted 10 calls without waiting
//	after Close, new work is refused: mp: pool is closed
//	after Join, every worker has exited: 10 of 10 results ready
//	[0 1 4 9 16 25 36 49 64 81]
func ApplyAsyncCloseJoin(ctx context.Context, w io.Writer) error {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 4})
	if err != nil {
		return err
	}
	defer stopPool(pool)

	var results []*mp.AsyncResult[int]
	for i := range 10 {
		results = append(results, square.ApplyAsync(ctx, pool, i, nil, nil))
	}
	fmt.Fprintf(w, "submitted %d calls without waiting\n", len(results))

	if err := pool.Close(); err != nil {
		return err
	}
	_, err = square.Apply(ctx, pool, 1)
	fmt.Fprintln(w, "after Close, new work is refused:", err)
	if err := pool.Join(ctx); err != nil {
		return err
	}
	ready := 0
	for _, r := range results {
		if r.Ready() {
			ready++
		}
	}
	fmt.Fprintf(w, "after Join, every worker has exited: %d of %d results ready\n", ready, len(results))

	var values []int
	for _, r := range results {
		v, err := r.Get(ctx)
		if err != nil {
			return err
		}
		values = append(values, v)
	}
	fmt.Fprintln(w, values)
	return nil
}

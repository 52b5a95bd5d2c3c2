//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-mp/mp"
)

// work is the task of the pool-against-processes scenario: a little
// arithmetic, far cheaper than starting a process.
func work(n int) (int, error) {
	sum := 0
	for i := range 1000 {
		sum += (n * i) % 7
	}
	return sum, nil
}

var workFn = mp.Register("scenarios.work", work)

type workResult struct {
	N, Result int
}

type workArgs struct {
	N   int
	Out *mp.Queue[workResult]
}

// workAlone is the same task as a Process target: it reports on a queue
// shared with the parent.
var workAlone = mp.RegisterProc("scenarios.workAlone", func(a workArgs) error {
	r, _ := work(a.N)
	return a.Out.Put(context.Background(), workResult{a.N, r})
})

// PoolVsProcesses runs the same 100 tasks twice: on a pool of 4 workers,
// which start once and take the tasks in turn, then in 100 processes, one
// per task. Starting a process costs more than running such a task, so
// the pool is much faster. The timings vary from run to run:
//
//	a pool of 4 workers: 100 tasks in 9ms
//	100 processes, one per task: 100 tasks in 240ms
//	the pool was 26.7 times as fast
//	same results: true
func PoolVsProcesses(ctx context.Context, w io.Writer) error {
	const n = 100
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}

	start := time.Now()
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 4})
	if err != nil {
		return err
	}
	defer stopPool(pool)
	viaPool, err := workFn.Map(ctx, pool, items, 1)
	if err != nil {
		return err
	}
	if err := closeAndJoin(ctx, pool); err != nil {
		return err
	}
	poolTime := time.Since(start)
	fmt.Fprintf(w, "a pool of 4 workers: %d tasks in %v\n", n, poolTime.Round(time.Millisecond))

	start = time.Now()
	q, err := mp.NewQueue[workResult](0)
	if err != nil {
		return err
	}
	defer q.Close()
	procs := make([]*mp.Process, 0, n)
	defer func() {
		for _, p := range procs {
			cleanup(p)
		}
	}()
	for _, i := range items {
		p := mp.NewProcess(workAlone, workArgs{N: i, Out: q})
		if err := p.Start(); err != nil {
			return err
		}
		procs = append(procs, p)
	}
	viaProcs := make([]int, n)
	for range n {
		r, err := q.Get(ctx)
		if err != nil {
			return err
		}
		viaProcs[r.N] = r.Result
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	procTime := time.Since(start)
	fmt.Fprintf(w, "%d processes, one per task: %d tasks in %v\n", n, n, procTime.Round(time.Millisecond))
	fmt.Fprintf(w, "the pool was %.1f times as fast\n", procTime.Seconds()/poolTime.Seconds())
	fmt.Fprintln(w, "same results:", slices.Equal(viaPool, viaProcs))
	return nil
}

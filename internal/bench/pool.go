//go:build linux

package bench

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp"
)

var double = mp.Register("bench.double", func(x int) (int, error) { return 2 * x, nil })

// cpuTask is py_baseline's _cpu_task: sum 0..n-1.
func cpuTask(n int) (int, error) {
	res := 0
	for i := 0; i < n; i++ {
		res += i ^ (res >> 7) // keeps the compiler from closing the loop
	}
	return res, nil
}

var cpuTaskFn = mp.Register("bench.cpuTask", cpuTask)

var sink atomic.Int64

func init() {
	add(Workload{Name: "pool_map", Doc: "Map(x*2) over 200k items, default chunks", Run: benchPoolMap})
	add(Workload{Name: "pool_apply", Doc: "10k ApplyAsync, then Apply one at a time", Run: benchPoolApply})
	add(Workload{Name: "cpu_speedup", Doc: "CPU-bound Map on 2 workers vs serial", Run: benchCPUSpeedup})
}

// newPool starts a pool of n workers and waits until they all take
// tasks. Python's workers are forked and ready at once, so that its
// warm-ups (or none, for cpu_speedup) leave every worker ready; ours are
// re-executed, 10 ms each on a slow machine, and a warm-up of a few tasks
// can be over before the last worker is up.
func newPool(n int) (*mp.Pool, func(), error) {
	p, err := mp.NewPool(mp.PoolOptions{Processes: n})
	if err != nil {
		return nil, nil, err
	}
	done := func() {
		p.Close()
		p.Join(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitReady(ctx, p); err != nil {
		done()
		return nil, nil, err
	}
	return p, done, nil
}

func benchPoolMap(scale float64) ([]Result, error) {
	n := scaled(200000, scale)
	pool, done, err := newPool(2)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx := context.Background()
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	if _, err := double.Map(ctx, pool, items[:100], 0); err != nil {
		return nil, err
	}
	t := time.Now()
	if _, err := double.Map(ctx, pool, items, 0); err != nil {
		return nil, err
	}
	dt := time.Since(t)
	return []Result{{"pool_map", dt.Seconds() / float64(n) * 1e6, "us/item"}}, nil
}

func benchPoolApply(scale float64) ([]Result, error) {
	n := scaled(10000, scale)
	pool, done, err := newPool(2)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx := context.Background()
	if _, err := double.Apply(ctx, pool, 1); err != nil {
		return nil, err
	}
	t := time.Now()
	rs := make([]*mp.AsyncResult[int], n)
	for i := range rs {
		rs[i] = double.ApplyAsync(context.Background(), pool, i, nil, nil)
	}
	for _, r := range rs {
		if _, err := r.Get(ctx); err != nil {
			return nil, err
		}
	}
	async := time.Since(t)
	m := max(n/5, 1)
	t = time.Now()
	for i := 0; i < m; i++ {
		if _, err := double.Apply(ctx, pool, i); err != nil {
			return nil, err
		}
	}
	sync := time.Since(t)
	return []Result{
		{"pool_apply_async", async.Seconds() / float64(n) * 1e6, "us/task"},
		{"pool_apply_sync", sync.Seconds() / float64(m) * 1e6, "us/task"},
	}, nil
}

func benchCPUSpeedup(scale float64) ([]Result, error) {
	// Go runs py_baseline's 2M-step task in about a millisecond, too short
	// to measure parallel speed-up: each task here is 100x longer.
	n, tasks := scaled(200_000_000, scale), 8
	t := time.Now()
	sum := 0
	for i := 0; i < tasks; i++ {
		r, _ := cpuTask(n)
		sum += r
	}
	serial := time.Since(t)
	sink.Store(int64(sum)) // keep the serial work from being optimised away
	pool, done, err := newPool(2)
	if err != nil {
		return nil, err
	}
	defer done()
	args := make([]int, tasks)
	for i := range args {
		args[i] = n
	}
	ctx := context.Background()
	t = time.Now()
	if _, err := cpuTaskFn.Map(ctx, pool, args, 1); err != nil {
		return nil, err
	}
	par := time.Since(t)
	return []Result{{"cpu_speedup", serial.Seconds() / par.Seconds(), "x"}}, nil
}

// waitReady waits until every worker of pool takes tasks.
func waitReady(ctx context.Context, pool *mp.Pool) error {
	for {
		ready := 0
		for _, w := range pool.Stats() {
			if w.Ready {
				ready++
			}
		}
		if ready == pool.Processes() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

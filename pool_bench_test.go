//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// The pool benchmarks are `mp bench`'s pool workloads in testing form, to
// profile them: go test -run X -bench Pool -cpuprofile cpu.out.

func benchPool(b *testing.B) *mp.Pool {
	p, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.Close()
		p.Join(context.Background())
	})
	if _, err := double.Apply(context.Background(), p, 1); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkPoolMap maps over 200 000 items per op, with default chunks.
func BenchmarkPoolMap(b *testing.B) {
	p := benchPool(b)
	items := make([]int, 200000)
	for i := range items {
		items[i] = i
	}
	for b.Loop() {
		out, err := double.Map(context.Background(), p, items, 0)
		if err != nil {
			b.Fatal(err)
		}
		if out[len(out)-1] != 2*items[len(items)-1] {
			b.Fatalf("last result %d", out[len(out)-1])
		}
	}
}

// BenchmarkPoolApplyAsync gives 10 000 tasks per op, then waits for them,
// as `mp bench pool_apply` does.
// Its allocations per op are about 1 per task (the result; the call, with
// a small argument inside, is used again): see TestApplyAsyncAllocations.
func BenchmarkPoolApplyAsync(b *testing.B) {
	p := benchPool(b)
	b.ReportAllocs()
	rs := make([]*mp.AsyncResult[int], 10000)
	ctx := context.Background()
	cpu0, wcpu0 := processCPU(b), workersCPU(p)
	for b.Loop() {
		for i := range rs {
			rs[i] = double.ApplyAsync(context.Background(), p, i, nil, nil)
		}
		for i, r := range rs {
			if v, err := r.Get(ctx); err != nil || v != 2*i {
				b.Fatalf("task %d: %d, %v", i, v, err)
			}
		}
	}
	// This process's CPU time (all its threads, the workers not included)
	// per task: on a shared machine, steadier than the time per op.
	tasks := float64(b.N * len(rs))
	b.ReportMetric(float64(processCPU(b)-cpu0)/tasks, "cpu-ns/task")
	b.ReportMetric(float64(workersCPU(p)-wcpu0)/tasks, "worker-cpu-ns/task")
}

// workersCPU returns the user and system CPU time p's workers have used,
// from /proc (0 for a worker gone).
func workersCPU(p *mp.Pool) time.Duration {
	var sum time.Duration
	for _, w := range p.Stats() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(w.Pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields 14 and 15 (utime, stime, in clock ticks of 10 ms) follow
		// the command's name, in parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		for _, s := range f[11:13] {
			n, _ := strconv.Atoi(s)
			sum += time.Duration(n) * 10 * time.Millisecond
		}
	}
	return sum
}

// processCPU returns the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPoolApply runs one task at a time.
func BenchmarkPoolApply(b *testing.B) {
	p := benchPool(b)
	ctx := context.Background()
	for b.Loop() {
		if v, err := double.Apply(ctx, p, 21); err != nil || v != 42 {
			b.Fatalf("%d, %v", v, err)
		}
	}
}

// BenchmarkPoolMapBytes maps over 100 MiB of items of 1 KiB and 64 KiB
// per op, with default chunks: map_var's points.
func BenchmarkPoolMapBytes(b *testing.B) {
	p := benchPool(b)
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(strconv.Itoa(size>>10)+"k", func(b *testing.B) {
			items := bigItems(100<<20/size, size)
			b.SetBytes(100 << 20)
			for b.Loop() {
				if _, err := firstByte.Map(context.Background(), p, items, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

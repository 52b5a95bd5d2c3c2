//go:build linux

package mp_test

import (
	"context"
	"strconv"
	"testing"

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

// BenchmarkPoolApplyAsync gives 1000 tasks per op, then waits for them.
// Its allocations per op are about 2 per task (the call, with a small
// argument inside, and its result): see TestApplyAsyncAllocations.
func BenchmarkPoolApplyAsync(b *testing.B) {
	p := benchPool(b)
	b.ReportAllocs()
	rs := make([]*mp.AsyncResult[int], 1000)
	ctx := context.Background()
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

//go:build linux

package mp_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/go-mp/mp"
)

// BenchmarkQueuePutGet measures one item through a Queue in one process
// (a producer goroutine, the benchmark consuming).
func BenchmarkQueuePutGet(b *testing.B) {
	q, err := mp.NewQueue[int64](0)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	go func() {
		for i := 0; i < b.N; i++ {
			q.Put(ctx, int64(i))
		}
	}()
	for i := 0; i < b.N; i++ {
		if _, err := q.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueueSize measures []byte items of 8 B to 4 MiB through a
// Queue in one process (a producer goroutine, the benchmark consuming);
// `mp bench queue_size` measures them between processes.
func BenchmarkQueueSize(b *testing.B) {
	for _, size := range []int{8, 1 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			q, err := mp.NewQueue[[]byte](0)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			item := make([]byte, size)
			b.SetBytes(int64(size))
			go func() {
				for i := 0; i < b.N; i++ {
					q.Put(ctx, item)
				}
			}()
			for i := 0; i < b.N; i++ {
				if _, err := q.Get(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

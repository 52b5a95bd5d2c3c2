package mp_test

import (
	"context"
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

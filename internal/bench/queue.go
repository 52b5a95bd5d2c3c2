//go:build linux

package bench

import (
	"context"
	"time"

	"github.com/go-mp/mp"
)

type producerArgs struct {
	Q *mp.Queue[int64]
	N int
}

var queueProducer = mp.RegisterProc("bench.queueProducer", func(a producerArgs) error {
	ctx := context.Background()
	for i := 0; i < a.N; i++ {
		if err := a.Q.Put(ctx, int64(i)); err != nil {
			return err
		}
	}
	return a.Q.Put(ctx, -1) // Python's None
})

func init() {
	add(Workload{Name: "queue_tp", Doc: "small items through a Queue, child to parent", Run: benchQueue})
}

func benchQueue(scale float64) ([]Result, error) {
	n := scaled(200000, scale)
	q, err := mp.NewQueue[int64](0)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	p := mp.NewProcess(queueProducer, producerArgs{q, n})
	if err := p.Start(); err != nil {
		return nil, err
	}
	ctx := context.Background()
	t := time.Now()
	for {
		v, err := q.Get(ctx)
		if err != nil {
			return nil, err
		}
		if v < 0 {
			break
		}
	}
	dt := time.Since(t)
	if err := p.Join(ctx); err != nil {
		return nil, err
	}
	return []Result{{"queue_tp", float64(n) / dt.Seconds() / 1e3, "k items/s"}}, nil
}

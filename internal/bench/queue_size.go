//go:build linux

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/go-mp/mp"
)

// queueSizes are the item sizes queue_size measures, with the suffix of
// each one's result names.
var queueSizes = []struct {
	size int
	name string
}{{8, "8"}, {1 << 10, "1k"}, {64 << 10, "64k"}, {256 << 10, "256k"}, {1 << 20, "1m"}, {4 << 20, "4m"}}

// queueSizeItems is how many items of size bytes queue_size sends at scale
// 1: about 1.5 GiB, at most 200 000, for a second or two at each size.
func queueSizeItems(size int, scale float64) int {
	return scaled(min(200000, (3<<29)/size), scale)
}

type sizeProducerArgs struct {
	Q    *mp.Queue[[]byte]
	Size int
	N    int
}

var queueSizeProducer = mp.RegisterProc("bench.queueSizeProducer", func(a sizeProducerArgs) error {
	ctx := context.Background()
	item := make([]byte, a.Size)
	for i := range item {
		item[i] = byte(i)
	}
	for i := 0; i < a.N; i++ {
		if err := a.Q.Put(ctx, item); err != nil {
			return err
		}
	}
	return nil
})

func init() {
	add(Workload{Name: "queue_size", Doc: "[]byte items of 8 B to 4 MiB through a Queue, child to parent", Run: benchQueueSize, Growth: true})
}

// benchQueueSize sends items of each size from a child to the parent and
// reports, per size, items/s ("queue_size_64k") and MB/s of item bytes
// ("queue_size_64k_mbs"). The clock starts at the first item, so the
// child's start is not counted.
func benchQueueSize(scale float64) ([]Result, error) {
	var res []Result
	for _, s := range queueSizes {
		n := max(2, queueSizeItems(s.size, scale))
		dt, err := queueSizeRun(s.size, n)
		if err != nil {
			return res, fmt.Errorf("size %d: %w", s.size, err)
		}
		rate := float64(n-1) / dt.Seconds()
		res = append(res, Result{"queue_size_" + s.name, rate / 1e3, "k items/s"},
			Result{"queue_size_" + s.name + "_mbs", rate * float64(s.size) / 1e6, "MB/s"})
	}
	return res, nil
}

// queueSizeRun times n-1 items of size bytes (after the first) from a
// producer child to this process.
func queueSizeRun(size, n int) (time.Duration, error) {
	q, err := mp.NewQueue[[]byte](0)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	p := mp.NewProcess(queueSizeProducer, sizeProducerArgs{q, size, n})
	if err := p.Start(); err != nil {
		return 0, err
	}
	ctx := context.Background()
	var t time.Time
	for i := 0; i < n; i++ {
		v, err := q.Get(ctx)
		if err != nil {
			p.Terminate()
			p.Join(ctx)
			return 0, err
		}
		if len(v) != size {
			p.Terminate()
			p.Join(ctx)
			return 0, fmt.Errorf("item %d has %d bytes", i, len(v))
		}
		if i == 0 {
			t = time.Now()
		}
	}
	dt := time.Since(t)
	return dt, p.Join(ctx)
}

//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
)

// endOfItems is the sentinel that ends a stream of items on a queue, as
// 'STOP' does in Python's
//
//	for item in iter(queue.get, 'STOP'):
const endOfItems = -1

type sentinelProducerArgs struct {
	Items []int
	Tasks *mp.Queue[int]
}

// sentinelProducer puts the items, then the sentinel.
var sentinelProducer = mp.RegisterProc("scenarios.sentinelProducer", func(a sentinelProducerArgs) error {
	ctx := context.Background()
	for _, it := range a.Items {
		if err := a.Tasks.Put(ctx, it); err != nil {
			return err
		}
	}
	return a.Tasks.Put(ctx, endOfItems)
})

type sentinelConsumerArgs struct {
	Tasks   *mp.Queue[int]
	Results *mp.Queue[string] // lines for the parent, ended by ""
}

// sentinelConsumer takes items until the sentinel, reporting each on the
// results queue, itself ended by a sentinel of its own: "".
var sentinelConsumer = mp.RegisterProc("scenarios.sentinelConsumer", func(a sentinelConsumerArgs) error {
	ctx := context.Background()
	n := 0
	for {
		it, err := a.Tasks.Get(ctx)
		if err != nil {
			return err
		}
		if it == endOfItems {
			break
		}
		n++
		if err := a.Results.Put(ctx, fmt.Sprintf("consumer got %d, squared %d", it, it*it)); err != nil {
			return err
		}
	}
	if err := a.Results.Put(ctx, fmt.Sprintf("consumer got the sentinel after %d items", n)); err != nil {
		return err
	}
	return a.Results.Put(ctx, "")
})

// Sentinel runs a producer and a consumer on a Queue; the producer ends
// the stream with a sentinel value, on which the consumer stops. The
// consumer reports on a second queue, which the parent reads up to its
// own sentinel:
//
//	consumer got 1, squared 1
//	...
//	consumer got 5, squared 25
//	consumer got the sentinel after 5 items
//	producer and consumer exited
func Sentinel(ctx context.Context, w io.Writer) error {
	tasks, err := mp.NewQueue[int](0)
	if err != nil {
		return err
	}
	defer tasks.Close()
	results, err := mp.NewQueue[string](0)
	if err != nil {
		return err
	}
	defer results.Close()

	producer := mp.NewProcess(sentinelProducer, sentinelProducerArgs{Items: []int{1, 2, 3, 4, 5}, Tasks: tasks})
	consumer := mp.NewProcess(sentinelConsumer, sentinelConsumerArgs{Tasks: tasks, Results: results})
	for _, p := range []*mp.Process{producer, consumer} {
		if err := p.Start(); err != nil {
			return err
		}
		defer cleanup(p)
	}
	for {
		line, err := results.Get(ctx)
		if err != nil {
			return err
		}
		if line == "" {
			break
		}
		fmt.Fprintln(w, line)
	}
	for _, p := range []*mp.Process{producer, consumer} {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "producer and consumer exited")
	return nil
}

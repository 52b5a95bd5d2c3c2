//go:build linux

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-mp/mp"
)

type balanceProducerArgs struct {
	Items     int
	Consumers int // how many sentinels to put at the end
	Queue     *mp.Queue[int]
	Out       *mp.Conn
}

// balanceProducerReport is what the producer tells the parent.
type balanceProducerReport struct {
	Put      int
	MaxQsize int // the largest Qsize seen right after a Put
	Waits    int // Puts that found the queue full and had to wait
}

// balanceProducer puts items as fast as the queue lets it: when the queue
// is full it waits for room.
var balanceProducer = mp.RegisterProc("scenarios.balanceProducer", func(a balanceProducerArgs) error {
	defer a.Out.Close()
	ctx := context.Background()
	var rep balanceProducerReport
	for i := range a.Items {
		err := a.Queue.TryPut(i)
		if errors.Is(err, mp.ErrFull) {
			rep.Waits++
			err = a.Queue.Put(ctx, i)
		}
		if err != nil {
			return err
		}
		rep.Put++
		rep.MaxQsize = max(rep.MaxQsize, a.Queue.Qsize())
	}
	for range a.Consumers {
		if err := a.Queue.Put(ctx, endOfItems); err != nil {
			return err
		}
	}
	return a.Out.Send(rep)
})

type balanceConsumerArgs struct {
	Queue *mp.Queue[int]
	Out   *mp.Conn
}

// balanceConsumer takes items slowly, 5 ms each, until the sentinel, and
// reports how many it took and their sum.
var balanceConsumer = mp.RegisterProc("scenarios.balanceConsumer", func(a balanceConsumerArgs) error {
	defer a.Out.Close()
	ctx := context.Background()
	var got [2]int // count, sum
	for {
		it, err := a.Queue.Get(ctx)
		if err != nil {
			return err
		}
		if it == endOfItems {
			return a.Out.Send(got)
		}
		time.Sleep(5 * time.Millisecond)
		got[0]++
		got[1] += it
	}
})

// Balance has a fast producer feed two slow consumers through a queue of
// maxsize 3: the producer gets ahead until the queue is full, then waits
// for the consumers to make room, and the queue never holds more than 3
// items. The number of waits varies from run to run:
//
//	the producer put 30 items into a queue of maxsize 3
//	Qsize after each Put: at most 3, never above maxsize
//	the producer found the queue full 25 times and waited for room
//	2 slow consumers took 30 items, sum 435
func Balance(ctx context.Context, w io.Writer) error {
	const maxsize, items, consumers = 3, 30, 2
	q, err := mp.NewQueue[int](maxsize)
	if err != nil {
		return err
	}
	defer q.Close()

	// The consumers, then the producer; each reports on a pipe of its own.
	var ps []*mp.Process
	var reports []*mp.Conn
	for i := range consumers + 1 {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewProcess(balanceConsumer, balanceConsumerArgs{Queue: q, Out: out})
		if i == consumers {
			p = mp.NewProcess(balanceProducer,
				balanceProducerArgs{Items: items, Consumers: consumers, Queue: q, Out: out})
		}
		err = p.Start()
		out.Close()
		if err != nil {
			return err
		}
		defer cleanup(p)
		ps, reports = append(ps, p), append(reports, r)
	}

	var prod balanceProducerReport
	if err := reports[consumers].Recv(&prod); err != nil {
		return fmt.Errorf("report of the producer: %w", err)
	}
	taken, sum := 0, 0
	for i, r := range reports[:consumers] {
		var got [2]int
		if err := r.Recv(&got); err != nil {
			return fmt.Errorf("report of consumer %d: %w", i, err)
		}
		taken += got[0]
		sum += got[1]
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	if prod.MaxQsize > maxsize {
		return fmt.Errorf("the queue held %d items, maxsize %d", prod.MaxQsize, maxsize)
	}
	fmt.Fprintf(w, "the producer put %d items into a queue of maxsize %d\n", prod.Put, maxsize)
	fmt.Fprintf(w, "Qsize after each Put: at most %d, never above maxsize\n", prod.MaxQsize)
	fmt.Fprintf(w, "the producer found the queue full %d times and waited for room\n", prod.Waits)
	fmt.Fprintf(w, "%d slow consumers took %d items, sum %d\n", consumers, taken, sum)
	return nil
}

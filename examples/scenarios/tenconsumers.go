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

type tenConsumersArgs struct {
	Tasks *mp.JoinableQueue[int]
	Out   *mp.Conn // where the consumer sends the items it processed
}

// tenConsumersWorker processes items (a millisecond each) until the
// sentinel, marking each done, then reports the items it processed.
var tenConsumersWorker = mp.RegisterProc("scenarios.tenConsumersWorker", func(a tenConsumersArgs) error {
	defer a.Out.Close()
	ctx := context.Background()
	var mine []int
	for {
		it, err := a.Tasks.Get(ctx)
		if err != nil {
			return err
		}
		if it == endOfItems {
			if err := a.Tasks.TaskDone(); err != nil {
				return err
			}
			return a.Out.Send(mine)
		}
		time.Sleep(time.Millisecond)
		mine = append(mine, it)
		if err := a.Tasks.TaskDone(); err != nil {
			return err
		}
	}
})

// TenConsumers has ten consumer processes share the items of one
// JoinableQueue. Each item is taken by exactly one of them:
//
//	put 100 items; Join returned: all were marked done
//	each of the items 0..99 was processed exactly once: sum 4950
//	10 consumers stopped at their sentinel
func TenConsumers(ctx context.Context, w io.Writer) error {
	const consumers, items = 10, 100
	tasks, err := mp.NewJoinableQueue[int](0)
	if err != nil {
		return err
	}
	defer tasks.Close()

	ps := make([]*mp.Process, consumers)
	reports := make([]*mp.Conn, consumers)
	for i := range consumers {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewProcess(tenConsumersWorker, tenConsumersArgs{Tasks: tasks, Out: out})
		err = p.Start()
		out.Close()
		if err != nil {
			return err
		}
		defer cleanup(p)
		ps[i], reports[i] = p, r
	}
	for i := range items {
		if err := tasks.Put(ctx, i); err != nil {
			return err
		}
	}
	if err := tasks.Join(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "put %d items; Join returned: all were marked done\n", items)

	// One sentinel per consumer: each stops at the first it takes.
	for range consumers {
		if err := tasks.Put(ctx, endOfItems); err != nil {
			return err
		}
	}
	var all []int
	for i, r := range reports {
		var mine []int
		if err := r.Recv(&mine); err != nil {
			return fmt.Errorf("report of consumer %d: %w", i, err)
		}
		all = append(all, mine...)
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	slices.Sort(all)
	sum := 0
	for i, it := range all {
		if it != i {
			return fmt.Errorf("items processed: %v", all)
		}
		sum += it
	}
	if len(all) != items {
		return fmt.Errorf("%d items processed, want %d", len(all), items)
	}
	fmt.Fprintf(w, "each of the items 0..%d was processed exactly once: sum %d\n", items-1, sum)
	fmt.Fprintf(w, "%d consumers stopped at their sentinel\n", consumers)
	return nil
}

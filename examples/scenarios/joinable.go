//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
)

type joinableArgs struct {
	Tasks *mp.JoinableQueue[int]
	Sum   *mp.Value[int64]
}

// joinableConsumer serves forever: it takes an item, adds its square to
// the shared sum and marks the item done. It never returns; as a daemon it
// would end with its parent.
var joinableConsumer = mp.RegisterProc("scenarios.joinableConsumer", func(a joinableArgs) error {
	ctx := context.Background()
	for {
		it, err := a.Tasks.Get(ctx)
		if err != nil {
			return err
		}
		if _, err := a.Sum.Update(ctx, func(s int64) int64 { return s + int64(it*it) }); err != nil {
			return err
		}
		if err := a.Tasks.TaskDone(); err != nil {
			return err
		}
	}
})

// Joinable puts items on a JoinableQueue served by a daemon consumer and
// waits with Join until every item has been marked done. The consumer
// never stops by itself: the parent, which does not end here, terminates
// it.
//
//	put 10 items
//	Join returned: every item was marked done
//	sum of the squares, from the consumer: 385
//	the daemon consumer still waits for items: terminate it
//	consumer exit code -15
func Joinable(ctx context.Context, w io.Writer) error {
	tasks, err := mp.NewJoinableQueue[int](0)
	if err != nil {
		return err
	}
	defer tasks.Close()
	sum, err := mp.NewValue[int64](0)
	if err != nil {
		return err
	}
	defer sum.Close()

	p := mp.NewProcess(joinableConsumer, joinableArgs{Tasks: tasks, Sum: sum})
	p.Daemon = true
	if err := p.Start(); err != nil {
		return err
	}
	defer cleanup(p)

	const items = 10
	for i := 1; i <= items; i++ {
		if err := tasks.Put(ctx, i); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "put %d items\n", items)
	if err := tasks.Join(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "Join returned: every item was marked done")
	s, err := sum.Get(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sum of the squares, from the consumer: %d\n", s)

	if !p.IsAlive() {
		return fmt.Errorf("the consumer has exited")
	}
	fmt.Fprintln(w, "the daemon consumer still waits for items: terminate it")
	if err := p.Terminate(); err != nil {
		return err
	}
	p.Join(ctx) // an *mp.ExitError: killed by a signal
	code, ok := p.ExitCode()
	if !ok {
		return ctx.Err()
	}
	fmt.Fprintf(w, "consumer exit code %d\n", code)
	return nil
}

//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
)

type counterArgs struct {
	Counter *mp.Value[int64]
	Delta   int64
	Times   int
	Go      *mp.Event // raised once both have started, so that they overlap
}

// counterAdder adds Delta to the shared counter Times times, each addition
// one step under the Value's lock.
var counterAdder = mp.RegisterProc("scenarios.counterAdd", func(a counterArgs) error {
	ctx := context.Background()
	if err := a.Go.Wait(ctx); err != nil {
		return err
	}
	for range a.Times {
		if _, err := a.Counter.Update(ctx, func(n int64) int64 { return n + a.Delta }); err != nil {
			return err
		}
	}
	return nil
})

// SharedCounter has one process increment a shared Value 10 000 times
// while another decrements it 10 000 times. Each update is a
// read-modify-write under the Value's lock, so none is lost:
//
//	one process adds 1 10000 times, another adds -1 10000 times, at the same time
//	final value: 0
func SharedCounter(ctx context.Context, w io.Writer) error {
	const times = 10000
	total, err := mp.NewValue[int64](0)
	if err != nil {
		return err
	}
	defer total.Close()
	start, err := mp.NewEvent()
	if err != nil {
		return err
	}
	var ps []*mp.Process
	for _, delta := range []int64{1, -1} {
		p := mp.NewProcess(counterAdder, counterArgs{Counter: total, Delta: delta, Times: times, Go: start})
		if err := p.Start(); err != nil {
			return err
		}
		defer cleanup(p)
		ps = append(ps, p)
	}
	if err := start.Set(); err != nil {
		return err
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "one process adds 1 %d times, another adds -1 %d times, at the same time\n", times, times)
	n, err := total.Get(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "final value: %d\n", n)
	return nil
}

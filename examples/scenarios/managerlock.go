//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

// ManagerLock makes 10 000 updates of a manager Value from two processes
// at once: one adds 1 5 000 times while the other adds -1 5 000 times,
// each step a Get and a Set under a manager Lock (four requests to the
// manager), so that no update is lost:
//
//	one process adds 1 5000 times, another adds -1 5000 times, under a manager Lock
//	final value: 0
func ManagerLock(ctx context.Context, w io.Writer) error {
	const times = 5000
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	v, err := manager.NewValue(ctx, m, 0)
	if err != nil {
		return err
	}
	lock, err := manager.NewLock(ctx, m)
	if err != nil {
		return err
	}
	start, err := manager.NewEvent(ctx, m)
	if err != nil {
		return err
	}
	var ps []*mp.Process
	for _, delta := range []int{1, -1} {
		p := mp.NewProcess(managerAdd, managerAddArgs{Value: v, Lock: lock, Delta: delta, Times: times, Go: start})
		if err := p.Start(); err != nil {
			return err
		}
		defer cleanup(p)
		ps = append(ps, p)
	}
	if err := start.Set(ctx); err != nil {
		return err
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "one process adds 1 %d times, another adds -1 %d times, under a manager Lock\n", times, times)
	n, err := v.Get(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "final value: %d\n", n)
	return nil
}

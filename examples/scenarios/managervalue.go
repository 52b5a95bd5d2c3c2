//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

type managerAddArgs struct {
	Value *manager.Value[int]
	Lock  *manager.Lock
	Delta int
	Times int
	Go    *manager.Event // set once every adder has started, so that they overlap
}

// managerAdd adds Delta to the manager's Value Times times, each addition
// a read and a write under the manager's Lock.
var managerAdd = mp.RegisterProc("scenarios.managerAdd", func(a managerAddArgs) error {
	ctx := context.Background()
	if a.Go != nil {
		if err := a.Go.Wait(ctx); err != nil {
			return err
		}
	}
	for range a.Times {
		if err := a.Lock.Acquire(ctx); err != nil {
			return err
		}
		v, err := a.Value.Get(ctx)
		if err == nil {
			err = a.Value.Set(ctx, v+a.Delta)
		}
		if rerr := a.Lock.Release(ctx); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	return nil
})

// ManagerValue is the globals scenario again, with the counter held by a
// manager process: the children's additions reach the parent.
//
//	a manager holds a Value of 0
//	a child adds 5 to it
//	a child adds 10 to it
//	parent: value = 15
func ManagerValue(ctx context.Context, w io.Writer) error {
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
	fmt.Fprintln(w, "a manager holds a Value of 0")
	adds := []int{5, 10}
	var ps []*mp.Process
	for _, n := range adds {
		p := mp.NewProcess(managerAdd, managerAddArgs{Value: v, Lock: lock, Delta: n, Times: 1})
		if err := p.Start(); err != nil {
			return err
		}
		defer cleanup(p)
		ps = append(ps, p)
	}
	for i, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
		fmt.Fprintf(w, "a child adds %d to it\n", adds[i])
	}
	n, err := v.Get(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "parent: value = %d\n", n)
	return nil
}

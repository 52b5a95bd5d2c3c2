//go:build linux

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

type mgrIncrArgs struct {
	V    *manager.Value[int64]
	Lock *manager.Lock
	N    int
}

// mgrIncr is py_baseline's _mgr_incr: n increments of a manager Value
// under a manager Lock.
var mgrIncr = mp.RegisterProc("bench.mgrIncr", func(a mgrIncrArgs) error {
	ctx := context.Background()
	for i := 0; i < a.N; i++ {
		if err := a.Lock.Acquire(ctx); err != nil {
			return err
		}
		v, err := a.V.Get(ctx)
		if err == nil {
			err = a.V.Set(ctx, v+1)
		}
		if err != nil {
			return err
		}
		if err := a.Lock.Release(ctx); err != nil {
			return err
		}
	}
	return nil
})

func init() {
	add(Workload{Name: "manager_dict", Doc: "proxy set/get on a manager Dict", Run: benchManagerDict})
	add(Workload{Name: "manager_value_lock", Doc: "2 processes increment a manager Value under a manager Lock", Run: benchManagerValueLock})
}

func benchManagerDict(scale float64) ([]Result, error) {
	n := scaled(10000, scale)
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	d, err := manager.NewDict[int, int](ctx, m)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	for i := 0; i < n; i++ {
		if err := d.Set(ctx, i%100, i); err != nil {
			return nil, err
		}
		if _, _, err := d.Get(ctx, i%100); err != nil {
			return nil, err
		}
	}
	dt := time.Since(t).Seconds() / float64(2*n)
	return []Result{{"manager_dict", dt * 1e6, "us/op"}}, nil
}

func benchManagerValueLock(scale float64) ([]Result, error) {
	n := scaled(5000, scale)
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	v, err := manager.NewValue[int64](ctx, m, 0)
	if err != nil {
		return nil, err
	}
	lock, err := manager.NewLock(ctx, m)
	if err != nil {
		return nil, err
	}
	ps := []*mp.Process{
		mp.NewProcess(mgrIncr, mgrIncrArgs{V: v, Lock: lock, N: n}),
		mp.NewProcess(mgrIncr, mgrIncrArgs{V: v, Lock: lock, N: n}),
	}
	t := time.Now()
	for _, p := range ps {
		if err := p.Start(); err != nil {
			return nil, err
		}
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return nil, err
		}
	}
	dt := time.Since(t)
	got, err := v.Get(ctx)
	if err != nil {
		return nil, err
	}
	if got != int64(2*n) {
		return nil, fmt.Errorf("manager_value_lock: value %d, want %d", got, 2*n)
	}
	return []Result{{"manager_value_lock", float64(2*n) / dt.Seconds() / 1e3, "k incr/s"}}, nil
}

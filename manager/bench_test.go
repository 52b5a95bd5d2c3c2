//go:build linux

package manager_test

import (
	"context"
	"testing"

	"github.com/go-mp/mp/manager"
)

// BenchmarkDictSetGet is the manager_dict workload: one Set and one Get
// per iteration.
func BenchmarkDictSetGet(b *testing.B) {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	d, err := manager.NewDict[int, int](ctx, m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.Set(ctx, i%100, i); err != nil {
			b.Fatal(err)
		}
		if _, _, err := d.Get(ctx, i%100); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLockValue is one step of manager_value_lock, uncontended.
func BenchmarkLockValue(b *testing.B) {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	v, _ := manager.NewValue[int64](ctx, m, 0)
	l, _ := manager.NewLock(ctx, m)
	b.ReportAllocs()
	for b.Loop() {
		l.Acquire(ctx)
		n, _ := v.Get(ctx)
		v.Set(ctx, n+1)
		l.Release(ctx)
	}
}

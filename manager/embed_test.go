//go:build linux

package manager_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/apitest"
	"github.com/go-mp/mp/manager"
)

// List and Array, Semaphore and BoundedSemaphore share their code by
// embedding; these tests pin what that must not change.

func TestSharedProxiesMethodSets(t *testing.T) {
	// The method sets these proxies had before they shared code.
	proxy := []string{"Forget(context.Context) error", "MarshalCBOR() []uint8, error", "UnmarshalCBOR([]uint8) error"}
	array := append([]string{"All(context.Context) []int32, error", "Get(context.Context, int) int32, error",
		"Len(context.Context) int, error", "Set(context.Context, int, int32) error",
		"SetSlice(context.Context, int, int, []int32) error", "Slice(context.Context, int, int) []int32, error"}, proxy...)
	list := append([]string{"Append(context.Context, int32) error", "Clear(context.Context) error",
		"Count(context.Context, int32) int, error", "Extend(context.Context, []int32) error",
		"Index(context.Context, int32) int, error", "Insert(context.Context, int, int32) error",
		"Pop(context.Context, int) int32, error", "Remove(context.Context, int32) bool, error",
		"Reverse(context.Context) error"}, array...)
	sem := append([]string{"Acquire(context.Context) error", "Release(context.Context) error",
		"TryAcquire(context.Context) bool, error", "Value(context.Context) int, error"}, proxy...)
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"List", apitest.Methods[manager.List[int32]](), list},
		{"Array", apitest.Methods[manager.Array[int32]](), array},
		{"Semaphore", apitest.Methods[manager.Semaphore](), sem},
		{"BoundedSemaphore", apitest.Methods[manager.BoundedSemaphore](), sem},
	} {
		slices.Sort(c.want)
		if !slices.Equal(c.got, c.want) {
			t.Errorf("methods of *%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

// TestSharedProxiesKeepTheirKind sends each proxy through its encoding:
// it arrives as itself, working, and is refused as its sibling.
func TestSharedProxiesKeepTheirKind(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	wrongKind := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, manager.ErrWrongKind) {
			t.Errorf("%s: %v, want ErrWrongKind", what, err)
		}
	}

	l := must[*manager.List[int32]](t)(manager.NewList(ctx, m, []int32{1, 2}))
	a := must[*manager.Array[int32]](t)(manager.NewArray(ctx, m, []int32{3, 4}))
	lb, ab := must[[]byte](t)(l.MarshalCBOR()), must[[]byte](t)(a.MarshalCBOR())
	var l2 manager.List[int32]
	var a2 manager.Array[int32]
	wrongKind("a List received as an Array", a2.UnmarshalCBOR(lb))
	wrongKind("an Array received as a List", l2.UnmarshalCBOR(ab))
	check(t, l2.UnmarshalCBOR(lb))
	check(t, a2.UnmarshalCBOR(ab))
	check(t, l2.Append(ctx, 5))
	check(t, l2.SetSlice(ctx, 0, 1, nil)) // a List may change its length
	equal(t, "List", must[[]int32](t)(l.All(ctx)), []int32{2, 5})
	check(t, a2.Set(ctx, -1, 6))
	if err := a2.SetSlice(ctx, 0, 1, nil); !errors.Is(err, manager.ErrIndex) {
		t.Errorf("SetSlice resizing a received Array: %v, want ErrIndex", err)
	}
	equal(t, "Array", must[[]int32](t)(a.All(ctx)), []int32{3, 6})

	s := must[*manager.Semaphore](t)(manager.NewSemaphore(ctx, m, 1))
	b := must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 1))
	sb, bb := must[[]byte](t)(s.MarshalCBOR()), must[[]byte](t)(b.MarshalCBOR())
	var s2 manager.Semaphore
	var b2 manager.BoundedSemaphore
	wrongKind("a Semaphore received as a BoundedSemaphore", b2.UnmarshalCBOR(sb))
	wrongKind("a BoundedSemaphore received as a Semaphore", s2.UnmarshalCBOR(bb))
	check(t, s2.UnmarshalCBOR(sb))
	check(t, b2.UnmarshalCBOR(bb))
	check(t, s2.Release(ctx)) // a Semaphore may rise above its initial value
	equal(t, "Semaphore value", must[int](t)(s.Value(ctx)), 2)
	if err := b2.Release(ctx); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Errorf("a received BoundedSemaphore released past its bound: %v", err)
	}
	equal(t, "TryAcquire", must[bool](t)(b2.TryAcquire(ctx)), true)
	equal(t, "BoundedSemaphore value", must[int](t)(b.Value(ctx)), 0)
	check(t, b2.Release(ctx))

	// Zero proxies fail instead of panicking, through the shared methods
	// as through their own.
	var zl manager.List[int32]
	var za manager.Array[int32]
	var zs manager.Semaphore
	var zb manager.BoundedSemaphore
	for what, err := range map[string]error{
		"List.Get":                     func() error { _, err := zl.Get(ctx, 0); return err }(),
		"List.Append":                  zl.Append(ctx, 1),
		"Array.Len":                    func() error { _, err := za.Len(ctx); return err }(),
		"Array.SetSlice":               za.SetSlice(ctx, 0, 0, nil),
		"Semaphore.Acquire":            zs.Acquire(ctx),
		"Semaphore.Release":            zs.Release(ctx),
		"BoundedSemaphore.Value":       func() error { _, err := zb.Value(ctx); return err }(),
		"BoundedSemaphore.Release":     zb.Release(ctx),
		"BoundedSemaphore.MarshalCBOR": func() error { _, err := zb.MarshalCBOR(); return err }(),
	} {
		if err == nil {
			t.Errorf("%s of a zero proxy worked", what)
		}
	}
}

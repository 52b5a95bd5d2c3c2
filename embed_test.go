//go:build linux

package mp_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/apitest"
	"github.com/go-mp/mp/internal/leakcheck"
)

// Semaphore and BoundedSemaphore, RawValue and Value, RawArray and Array
// share their code by embedding; these tests pin what that must not
// change.

func TestSharedTypesMethodSets(t *testing.T) {
	// The method sets these types had before they shared code: the same
	// API, method for method.
	sem := []string{"Acquire(context.Context) error", "MarshalCBOR() []uint8, error", "Release() error",
		"TryAcquire() bool", "UnmarshalCBOR([]uint8) error", "Value() int"}
	raw := []string{"Close() error", "MarshalCBOR() []uint8, error", "UnmarshalCBOR([]uint8) error"}
	guarded := append([]string{"Acquire(context.Context) error", "Locker() mp.SharedLock", "Release() error"}, raw...)
	rawValue := append([]string{"Load() int32", "Ptr() *int32", "Store(int32) "}, raw...)
	rawArray := append([]string{"CopyFrom([]int32) error", "CopyTo([]int32) error", "Get(int) int32, error",
		"Len() int", "Set(int, int32) error", "Slice() []int32"}, raw...)
	value := append([]string{"Get(context.Context) int32, error", "Load() int32", "Ptr() *int32",
		"Set(context.Context, int32) error", "Store(int32) ",
		"Update(context.Context, func(int32) int32) int32, error"}, guarded...)
	array := append([]string{"CopyFrom(context.Context, []int32) error", "CopyTo(context.Context, []int32) error",
		"Get(context.Context, int) int32, error", "Len() int", "Set(context.Context, int, int32) error",
		"Slice() []int32"}, guarded...)
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"Semaphore", apitest.Methods[mp.Semaphore](), sem},
		{"BoundedSemaphore", apitest.Methods[mp.BoundedSemaphore](), sem},
		{"RawValue", apitest.Methods[mp.RawValue[int32]](), rawValue},
		{"Value", apitest.Methods[mp.Value[int32]](), value},
		{"RawArray", apitest.Methods[mp.RawArray[int32]](), rawArray},
		{"Array", apitest.Methods[mp.Array[int32]](), array},
	} {
		slices.Sort(c.want)
		if !slices.Equal(c.got, c.want) {
			t.Errorf("methods of *%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

// TestSharedTypesZero calls every method of the zero value of each type:
// they report ErrClosed (or a zero result) instead of panicking, through
// the shared code as through their own.
func TestSharedTypesZero(t *testing.T) {
	ctx := context.Background()
	closed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, mp.ErrClosed) {
			t.Errorf("%s of a zero value = %v, want ErrClosed", what, err)
		}
	}
	for name, s := range map[string]interface {
		Acquire(context.Context) error
		TryAcquire() bool
		Release() error
		Value() int
		MarshalCBOR() ([]byte, error)
	}{"Semaphore": &mp.Semaphore{}, "BoundedSemaphore": &mp.BoundedSemaphore{}} {
		closed(name+".Acquire", s.Acquire(ctx))
		closed(name+".Release", s.Release())
		_, err := s.MarshalCBOR()
		closed(name+".MarshalCBOR", err)
		if s.TryAcquire() || s.Value() != 0 {
			t.Errorf("%s: TryAcquire or Value of a zero value", name)
		}
	}

	var rv mp.RawValue[int32]
	rv.Store(1)
	if rv.Load() != 0 || rv.Ptr() != nil || rv.Close() != nil {
		t.Error("zero RawValue")
	}
	_, err := rv.MarshalCBOR()
	closed("RawValue.MarshalCBOR", err)

	var v mp.Value[int32]
	_, err = v.Get(ctx)
	closed("Value.Get", err)
	closed("Value.Set", v.Set(ctx, 1))
	_, err = v.Update(ctx, func(x int32) int32 { return x })
	closed("Value.Update", err)
	closed("Value.Acquire", v.Acquire(ctx))
	closed("Value.Release", v.Release())
	_, err = v.MarshalCBOR()
	closed("Value.MarshalCBOR", err)
	v.Store(1)
	if v.Load() != 0 || v.Ptr() != nil || v.Locker() != nil || v.Close() != nil {
		t.Error("zero Value")
	}

	var ra mp.RawArray[int32]
	_, err = ra.Get(0)
	closed("RawArray.Get", err)
	closed("RawArray.Set", ra.Set(0, 1))
	closed("RawArray.CopyFrom", ra.CopyFrom(nil))
	closed("RawArray.CopyTo", ra.CopyTo(nil))
	_, err = ra.MarshalCBOR()
	closed("RawArray.MarshalCBOR", err)
	if ra.Len() != 0 || ra.Slice() != nil || ra.Close() != nil {
		t.Error("zero RawArray")
	}

	var a mp.Array[int32]
	_, err = a.Get(ctx, 0)
	closed("Array.Get", err)
	closed("Array.Set", a.Set(ctx, 0, 1))
	closed("Array.CopyFrom", a.CopyFrom(ctx, nil))
	closed("Array.CopyTo", a.CopyTo(ctx, nil))
	closed("Array.Acquire", a.Acquire(ctx))
	closed("Array.Release", a.Release())
	_, err = a.MarshalCBOR()
	closed("Array.MarshalCBOR", err)
	if a.Len() != 0 || a.Slice() != nil || a.Locker() != nil || a.Close() != nil {
		t.Error("zero Array")
	}
}

// sharedMemfds counts this process's memfds of semaphores, values and
// arrays.
func sharedMemfds() int {
	n := 0
	for _, fd := range leakcheck.FDNames() {
		for _, k := range []string{"/memfd:mp-Semaphore", "/memfd:mp-Value", "/memfd:mp-Array"} {
			if strings.Contains(fd, k) {
				n++
			}
		}
	}
	return n
}

// TestSharedTypesReleasedWhenGarbage drops one object of each type, used
// through the shared methods, without closing it: its memory is released
// once it is garbage, as the cleanup is tied to the object itself.
func TestSharedTypesReleasedWhenGarbage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := sharedMemfds()
	func() {
		s, err1 := mp.NewSemaphore(1)
		b, err2 := mp.NewBoundedSemaphore(1)
		rv, err3 := mp.NewRawValue[int32](1)
		v, err4 := mp.NewValue[int32](1)
		ra, err5 := mp.NewRawArray[int32](4)
		a, err6 := mp.NewArray[int32](4)
		if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(s.Acquire(ctx), b.Acquire(ctx), v.Acquire(ctx), a.Acquire(ctx)); err != nil {
			t.Fatal(err)
		}
		rv.Store(rv.Load() + 1)
		v.Store(v.Load() + 1)
		if ra.Len()+a.Len() != 8 {
			t.Fatal("Len")
		}
		if err := errors.Join(s.Release(), b.Release(), v.Release(), a.Release()); err != nil {
			t.Fatal(err)
		}
	}()
	if got := sharedMemfds(); got != before+6 {
		t.Fatalf("%d memfds of the kinds made, want %d", got, before+6)
	}
	for sharedMemfds() != before {
		if ctx.Err() != nil {
			t.Fatalf("%d memfds left once the objects are garbage, want %d", sharedMemfds(), before)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

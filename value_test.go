//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp"
)

// point is a struct that can live in shared memory.
type point struct {
	X, Y  float64
	Tag   int32
	Valid bool
	Hist  [3]uint16
}

// sharedArgs carries shared values to a child; the fields an op does not
// use stay nil.
type sharedArgs struct {
	V   *mp.Value[int64]
	P   *mp.Value[point]
	RV  *mp.RawValue[point]
	A   *mp.Array[float64]
	RA  *mp.RawArray[point]
	Op  string
	N   int
	Out *mp.Conn
}

var sharedOp = mp.RegisterProc("test.sharedOp", sharedOpBody)

// sharedOpChild is sharedOp under another name, for a child to start.
var sharedOpChild *mp.Func[sharedArgs, struct{}]

func init() { sharedOpChild = mp.RegisterProc("test.sharedOpChild", sharedOpBody) }

func sharedOpBody(a sharedArgs) error {
	if a.Out != nil {
		defer a.Out.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch a.Op {
	case "set":
		// Write every shared object that came along.
		if a.V != nil {
			if err := a.V.Set(ctx, int64(a.N)); err != nil {
				return err
			}
		}
		if a.P != nil {
			if _, err := a.P.Update(ctx, func(p point) point {
				p.X, p.Tag, p.Hist[2] = float64(a.N), int32(a.N), uint16(a.N)
				return p
			}); err != nil {
				return err
			}
		}
		if a.RV != nil {
			a.RV.Ptr().Y = float64(a.N)
		}
		if a.A != nil {
			src := make([]float64, a.A.Len())
			for i := range src {
				src[i] = float64(i * a.N)
			}
			if err := a.A.CopyFrom(ctx, src); err != nil {
				return err
			}
		}
		if a.RA != nil {
			for i := range a.RA.Slice() {
				a.RA.Slice()[i] = point{X: float64(i), Tag: int32(a.N), Valid: true}
			}
		}
		if a.Out != nil {
			return a.Out.Send("done")
		}
		return nil
	case "incr":
		for range a.N {
			if _, err := a.V.Update(ctx, func(x int64) int64 { return x + 1 }); err != nil {
				return err
			}
		}
		return nil
	case "incrHeld":
		// Hold the lock, use the unlocked accessors.
		p := a.V.Ptr()
		for i := range a.N {
			if err := a.V.Acquire(ctx); err != nil {
				return err
			}
			if i%2 == 0 {
				*p++
			} else {
				a.V.Store(a.V.Load() + 1)
			}
			if err := a.V.Release(); err != nil {
				return err
			}
		}
		return nil
	case "tryLock":
		// Report whether the Value's lock (held by the parent) is free here.
		var got []bool
		if a.V != nil {
			got = append(got, a.V.Locker().TryAcquire())
		}
		if a.A != nil {
			got = append(got, a.A.Locker().TryAcquire())
		}
		return a.Out.Send(got)
	case "nested":
		// Pass everything on to a grandchild that sets it.
		b := a
		b.Op = "set"
		p := mp.NewProcess(sharedOpChild, b)
		if err := p.Start(); err != nil {
			return err
		}
		return p.Join(ctx)
	}
	return fmt.Errorf("unknown op %q", a.Op)
}

func runShared(t *testing.T, a sharedArgs) {
	t.Helper()
	p := start(t, mp.NewProcess(sharedOp, a))
	if err := p.Join(ctxTimeout(t, 60*time.Second)); err != nil {
		t.Fatalf("child %s: %v", a.Op, err)
	}
}

func newValue[T any](t *testing.T, v T, opts ...mp.SyncOption) *mp.Value[T] {
	t.Helper()
	x, err := mp.NewValue(v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestValueBasics(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)
	v := newValue(t, int64(5))
	if got, err := v.Get(ctx); err != nil || got != 5 {
		t.Fatalf("Get = %d, %v", got, err)
	}
	if err := v.Set(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if got, err := v.Update(ctx, func(x int64) int64 { return x * 6 }); err != nil || got != 42 {
		t.Fatalf("Update = %d, %v", got, err)
	}
	if got := v.Load(); got != 42 {
		t.Fatalf("Load = %d", got)
	}
	*v.Ptr() += 1
	v.Store(v.Load() + 1)
	if got, _ := v.Get(ctx); got != 44 {
		t.Fatalf("after Ptr and Store: %d", got)
	}
	if uintptr(unsafe.Pointer(v.Ptr()))%64 != 0 {
		t.Errorf("value not 64-byte aligned")
	}

	// The default lock is an RLock: Get and Update work while holding it.
	if _, ok := v.Locker().(*mp.RLock); !ok {
		t.Fatalf("default lock is %T", v.Locker())
	}
	if err := v.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := v.Update(ctx, func(x int64) int64 { return x + 1 }); err != nil || got != 45 {
		t.Fatalf("Update while holding the RLock = %d, %v", got, err)
	}
	// Another goroutine waits for the lock.
	other := make(chan error)
	go func() { other <- v.Set(ctxTimeout(t, 30*time.Millisecond), 0) }()
	if err := <-other; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set while another goroutine holds the lock = %v", err)
	}
	if err := v.Release(); err != nil {
		t.Fatal(err)
	}
	// A panicking update releases the lock.
	func() {
		defer func() { recover() }()
		v.Update(ctx, func(int64) int64 { panic("in update") })
	}()
	if held, _ := v.Locker().(*mp.RLock).Held(); held {
		t.Fatal("lock held after a panicking Update")
	}

	// A lock of the caller's, shared by two values.
	l := newLock(t)
	a := newValue(t, 1.5, mp.WithLock(l))
	b := newValue(t, [2]bool{true}, mp.WithLock(l))
	if a.Locker() != mp.SharedLock(l) || b.Locker() != mp.SharedLock(l) {
		t.Fatal("WithLock ignored")
	}
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctxTimeout(t, 20*time.Millisecond), [2]bool{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set while the shared lock is held = %v", err)
	}
	a.Store(2.5)
	a.Release()
	if got, _ := b.Get(ctx); got != [2]bool{true} {
		t.Fatalf("b = %v", got)
	}
	if got, _ := a.Get(ctx); got != 2.5 {
		t.Fatalf("a = %v", got)
	}
	var nilLock *mp.Lock
	if _, err := mp.NewValue(1, mp.WithLock(nilLock)); err == nil {
		t.Fatal("WithLock(nil *Lock) accepted")
	}
	if _, err := mp.NewValue(1, mp.WithLock(&mp.RLock{})); err == nil {
		t.Fatal("WithLock(zero RLock) accepted")
	}
	if x, err := mp.NewValue(1, mp.WithLock(nil)); err != nil {
		t.Fatal(err)
	} else if _, ok := x.Locker().(*mp.RLock); !ok {
		t.Fatalf("WithLock(nil) gave %T", x.Locker())
	}

	// After Close.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := v.Get(ctx); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if err := v.Set(ctx, 1); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Set after Close = %v", err)
	}
	if _, err := v.Update(ctx, func(x int64) int64 { return x }); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Update after Close = %v", err)
	}
	if v.Load() != 0 || v.Ptr() != nil {
		t.Error("Load or Ptr after Close")
	}
	v.Store(3) // does nothing
	c, _ := pipe(t, true)
	if err := c.Send(v); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Send of a closed Value = %v", err)
	}
	var zero mp.Value[int64]
	if _, err := zero.Get(ctx); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Get of a zero Value = %v", err)
	}
	if err := zero.Acquire(ctx); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Acquire of a zero Value = %v", err)
	}
}

func TestRawValue(t *testing.T) {
	r, err := mp.NewRawValue(point{X: 1, Hist: [3]uint16{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Load(); got.X != 1 || got.Hist[2] != 3 {
		t.Fatalf("Load = %+v", got)
	}
	r.Store(point{Tag: 9})
	r.Ptr().Valid = true
	if got := r.Load(); got != (point{Tag: 9, Valid: true}) {
		t.Fatalf("Load = %+v", got)
	}
	runShared(t, sharedArgs{RV: r, Op: "set", N: 11})
	if got := r.Load(); got != (point{Y: 11, Tag: 9, Valid: true}) {
		t.Fatalf("after the child wrote: %+v", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Load() != (point{}) || r.Ptr() != nil {
		t.Error("Load or Ptr after Close")
	}
	r.Store(point{X: 1})
}

func TestValueTypes(t *testing.T) {
	type inner struct {
		B bool
		C complex64
	}
	type nested struct {
		A  [2]inner
		I  int
		U  uint8
		_  [3]byte
		F  float32
		CC complex128
	}
	ok := []func() error{
		func() error { _, err := mp.NewValue(true); return err },
		func() error { _, err := mp.NewValue(int8(-1)); return err },
		func() error { _, err := mp.NewValue(uint64(1)); return err },
		func() error { _, err := mp.NewValue(float32(1)); return err },
		func() error { _, err := mp.NewValue(complex(1, 2)); return err },
		func() error { _, err := mp.NewValue([4][2]int16{}); return err },
		func() error { _, err := mp.NewValue(nested{}); return err },
		func() error { _, err := mp.NewRawValue(nested{}); return err },
		func() error { _, err := mp.NewArray[nested](3); return err },
		func() error { _, err := mp.NewRawArray[point](3); return err },
	}
	for i, f := range ok {
		if err := f(); err != nil {
			t.Errorf("accepted type %d: %v", i, err)
		}
	}
	type withString struct {
		N    int
		Name string
	}
	type deep struct {
		A [2]struct{ P *int }
	}
	bad := map[string]func() error{
		"string":         func() error { _, err := mp.NewValue("x"); return err },
		"pointer":        func() error { _, err := mp.NewValue(new(int)); return err },
		"unsafe.Pointer": func() error { _, err := mp.NewValue(unsafe.Pointer(nil)); return err },
		"uintptr":        func() error { _, err := mp.NewValue(uintptr(0)); return err },
		"slice":          func() error { _, err := mp.NewValue([]int{}); return err },
		"map":            func() error { _, err := mp.NewValue(map[int]int{}); return err },
		"interface":      func() error { _, err := mp.NewValue[any](1); return err },
		"error":          func() error { _, err := mp.NewRawValue[error](nil); return err },
		"chan":           func() error { _, err := mp.NewRawValue(make(chan int)); return err },
		"func":           func() error { _, err := mp.NewArray[func()](1); return err },
		"Name":           func() error { _, err := mp.NewRawArray[withString](1); return err },
		"P":              func() error { _, err := mp.NewArrayFrom([]deep{{}}); return err },
		"size zero":      func() error { _, err := mp.NewValue(struct{}{}); return err },
		"[0]int":         func() error { _, err := mp.NewRawArray[[0]int](2); return err },
	}
	for what, f := range bad {
		// Twice: the second answer comes from the cache.
		for range 2 {
			err := f()
			if !errors.Is(err, mp.ErrUnsupportedType) {
				t.Errorf("%s: %v, want ErrUnsupportedType", what, err)
			} else if !strings.Contains(err.Error(), what) {
				t.Errorf("%s: message %q does not say what is wrong", what, err)
			}
		}
	}
}

func TestValueAcrossProcesses(t *testing.T) {
	v := newValue(t, int64(1))
	p := newValue(t, point{Y: 2})
	runShared(t, sharedArgs{V: v, P: p, Op: "set", N: 123})
	ctx := ctxTimeout(t, 10*time.Second)
	if got, err := v.Get(ctx); err != nil || got != 123 {
		t.Fatalf("Value after the child set it: %d, %v", got, err)
	}
	if got, _ := p.Get(ctx); got != (point{X: 123, Y: 2, Tag: 123, Hist: [3]uint16{0, 0, 123}}) {
		t.Fatalf("struct Value after the child updated it: %+v", got)
	}
}

// Two children increment one Value under its lock.
func TestValueIncrementTwoChildren(t *testing.T) {
	const n = 10000
	for _, tc := range []struct {
		name string
		op   string
		opts []mp.SyncOption
	}{
		{"Update/RLock", "incr", nil},
		{"Update/Lock", "incr", []mp.SyncOption{mp.WithLock(newLock(t))}},
		{"held/Lock", "incrHeld", []mp.SyncOption{mp.WithLock(newLock(t))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newValue(t, int64(0), tc.opts...)
			var ps []*mp.Process
			for range 2 {
				ps = append(ps, start(t, mp.NewProcess(sharedOp, sharedArgs{V: v, Op: tc.op, N: n})))
			}
			for _, p := range ps {
				if err := p.Join(ctxTimeout(t, 60*time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := v.Get(ctxTimeout(t, 10*time.Second)); err != nil || got != 2*n {
				t.Fatalf("after 2 × %d increments: %d, %v", n, got, err)
			}
		})
	}
}

// The lock travels with the Value: held here, it is held in the child.
func TestValueLockTravels(t *testing.T) {
	for _, opts := range [][]mp.SyncOption{nil, {mp.WithLock(newLock(t))}} {
		v := newValue(t, int64(0), opts...)
		a := newArray[float64](t, 4, opts...)
		ctx := ctxTimeout(t, 10*time.Second)
		if err := v.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if a.Locker() != v.Locker() {
			if err := a.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		r, w := pipe(t, false)
		p := start(t, mp.NewProcess(sharedOp, sharedArgs{V: v, A: a, Op: "tryLock", Out: w}))
		w.Close()
		var got []bool
		if err := r.Recv(&got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] || got[1] {
			t.Fatalf("child could take the locks the parent holds: %v", got)
		}
		if err := p.Join(ctxTimeout(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		if a.Locker() != v.Locker() {
			a.Release()
		}
		v.Release()
	}
}

func TestValueGrandchild(t *testing.T) {
	v := newValue(t, int64(0))
	rv, err := mp.NewRawValue(point{})
	if err != nil {
		t.Fatal(err)
	}
	runShared(t, sharedArgs{V: v, RV: rv, Op: "nested", N: 77})
	if got, _ := v.Get(ctxTimeout(t, 10*time.Second)); got != 77 {
		t.Fatalf("Value after the grandchild set it: %d", got)
	}
	if got := rv.Load(); got.Y != 77 {
		t.Fatalf("RawValue after the grandchild set it: %+v", got)
	}
}

// A process that dies holding the lock of a Value: the next operation
// takes over and says so.
func TestValueOwnerDied(t *testing.T) {
	l := newLock(t)
	v := newValue(t, int64(1), mp.WithLock(l))
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(holdLock, holdArgs{Lock: l, Out: b, Then: "sleep"}))
	b.Close()
	var pid int
	if err := a.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := v.Set(ctxTimeout(t, 20*time.Second), 5); !errors.Is(err, mp.ErrOwnerDied) {
		t.Fatalf("Set after the holder died = %v", err)
	}
	if got, err := v.Get(ctxTimeout(t, 10*time.Second)); err != nil || got != 5 {
		t.Fatalf("Get = %d, %v", got, err)
	}
	if l.Locked() {
		t.Fatal("lock left held")
	}
}

// A Value or Array received as another type is refused.
func TestValueDecodeMismatch(t *testing.T) {
	type xy struct{ X, Y int32 }
	type yx struct{ Y, X int32 }
	c1, c2 := pipe(t, true)
	v := newValue(t, int64(-1))
	rv, err := mp.NewRawValue(xy{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	arr := newArray[int64](t, 1)
	raw, err := mp.NewRawArray[int64](1)
	if err != nil {
		t.Fatal(err)
	}
	try := func(what string, send any, into any, want error, wantText string) {
		t.Helper()
		if err := c1.Send(send); err != nil {
			t.Fatal(err)
		}
		err := c2.Recv(into)
		if want != nil && !errors.Is(err, want) || err == nil || !strings.Contains(err.Error(), wantText) {
			t.Errorf("%s: %v; want %v (%q)", what, err, want, wantText)
		}
	}
	try("Value[int64] as Value[float32]", v, new(mp.Value[float32]), mp.ErrTypeMismatch, "8-byte elements")
	try("Value[int64] as Value[float64]", v, new(mp.Value[float64]), mp.ErrTypeMismatch, "another 8-byte type")
	try("Value[int64] as Value[uint64]", v, new(mp.Value[uint64]), mp.ErrTypeMismatch, "Value[uint64]")
	try("Value[int64] as Value[[2]int32]", v, new(mp.Value[[2]int32]), mp.ErrTypeMismatch, "")
	try("RawValue[xy] as RawValue[yx]", rv, new(mp.RawValue[yx]), mp.ErrTypeMismatch, "")
	try("RawValue[xy] as RawValue[int64]", rv, new(mp.RawValue[int64]), mp.ErrTypeMismatch, "")
	try("RawValue[xy] as RawValue[string]", rv, new(mp.RawValue[string]), mp.ErrUnsupportedType, "")
	try("Value as RawValue", v, new(mp.RawValue[int64]), nil, "a Value arrived where a RawValue was expected")
	try("Array as RawArray", arr, new(mp.RawArray[int64]), nil, "an Array arrived where a RawArray was expected")
	try("RawArray as Array", raw, new(mp.Array[int64]), nil, "a RawArray arrived where an Array was expected")
	try("RawValue as Value", rv, new(mp.Value[xy]), nil, "a RawValue arrived where a Value was expected")
	try("Value as Array", v, new(mp.Array[int64]), nil, "Value arrived where a")
	try("Array as Value", arr, new(mp.Value[int64]), nil, "Array arrived where a Value")
	try("RawArray as RawValue", raw, new(mp.RawValue[int64]), nil, "Array arrived where a Value")
	try("Array[int64] as Array[float64]", arr, new(mp.Array[float64]), mp.ErrTypeMismatch, "")
	try("RawArray[int64] as RawArray[int32]", raw, new(mp.RawArray[int32]), mp.ErrTypeMismatch, "")
	try("Lock as Value", newLock(t), new(mp.Value[int64]), nil, "a Lock arrived where a Value")
	try("Lock as RawValue", newLock(t), new(mp.RawValue[int64]), nil, "Lock arrived where a Value")

	// The right type arrives as the same memory, with the same lock.
	var got struct {
		V  *mp.Value[int64]
		RV *mp.RawValue[xy]
	}
	if err := c1.Send(struct {
		V  *mp.Value[int64]
		RV *mp.RawValue[xy]
	}{v, rv}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Recv(&got); err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 10*time.Second)
	got.V.Set(ctx, 99)
	got.RV.Store(xy{3, 4})
	if x, _ := v.Get(ctx); x != 99 || rv.Load() != (xy{3, 4}) {
		t.Fatalf("received copies do not share memory: %d %v", x, rv.Load())
	}
	if err := got.V.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if held, n := v.Locker().(*mp.RLock).Held(); !held || n != 1 {
		t.Fatal("received Value has another lock")
	}
	got.V.Release()
	got.V.Close()
	got.RV.Close()
}

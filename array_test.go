//go:build linux

package mp_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp"
)

func newArray[T any](t testing.TB, n int, opts ...mp.SyncOption) *mp.Array[T] {
	t.Helper()
	a, err := mp.NewArray[T](n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newRawArray[T any](t testing.TB, n int) *mp.RawArray[T] {
	t.Helper()
	a, err := mp.NewRawArray[T](n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestArrayBasics(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)
	a := newArray[float64](t, 5)
	if a.Len() != 5 {
		t.Fatalf("Len = %d", a.Len())
	}
	if _, ok := a.Locker().(*mp.RLock); !ok {
		t.Fatalf("default lock %T", a.Locker())
	}
	for i := range 5 {
		if err := a.Set(ctx, i, float64(i)/2); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := a.Get(ctx, 3); err != nil || got != 1.5 {
		t.Fatalf("Get(3) = %v, %v", got, err)
	}
	for _, i := range []int{-1, 5, 1 << 40} {
		if _, err := a.Get(ctx, i); !errors.Is(err, mp.ErrIndexOutOfRange) {
			t.Errorf("Get(%d) = %v", i, err)
		}
		if err := a.Set(ctx, i, 1); !errors.Is(err, mp.ErrIndexOutOfRange) {
			t.Errorf("Set(%d) = %v", i, err)
		}
	}
	// Copies in and out, whole and partial.
	if err := a.CopyFrom(ctx, []float64{10, 11, 12}); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 5)
	if err := a.CopyTo(ctx, out); err != nil || !slices.Equal(out, []float64{10, 11, 12, 1.5, 2}) {
		t.Fatalf("CopyTo = %v, %v", out, err)
	}
	if err := a.CopyFrom(ctx, make([]float64, 6)); !errors.Is(err, mp.ErrIndexOutOfRange) {
		t.Fatalf("CopyFrom of 6 into 5 = %v", err)
	}
	if err := a.CopyTo(ctx, make([]float64, 6)); !errors.Is(err, mp.ErrIndexOutOfRange) {
		t.Fatalf("CopyTo of 5 into 6 = %v", err)
	}
	two := make([]float64, 2)
	if err := a.CopyTo(ctx, two); err != nil || !slices.Equal(two, []float64{10, 11}) {
		t.Fatalf("partial CopyTo = %v, %v", two, err)
	}
	if !slices.Equal(a.Slice(), []float64{10, 11, 12, 1.5, 2}) {
		t.Fatalf("nothing may be copied by a failed copy: %v", a.Slice())
	}
	if uintptr(unsafe.Pointer(&a.Slice()[0]))%64 != 0 {
		t.Error("elements not 64-byte aligned")
	}
	// Holding the lock: other goroutines wait; Slice works.
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	a.Slice()[4] = 99
	other := make(chan error)
	go func() { _, err := a.Get(ctxTimeout(t, 20*time.Millisecond), 4); other <- err }()
	if err := <-other; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while another goroutine holds the lock = %v", err)
	}
	if got, err := a.Get(ctx, 4); err != nil || got != 99 { // re-entrant
		t.Fatalf("Get(4) = %v, %v", got, err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}

	// From a slice, with a Lock of the caller's.
	l := newLock(t)
	b, err := mp.NewArrayFrom([]int16{1, 2, 3}, mp.WithLock(l))
	if err != nil {
		t.Fatal(err)
	}
	if b.Locker() != mp.SharedLock(l) || b.Len() != 3 {
		t.Fatal("NewArrayFrom")
	}
	l.Acquire(ctx)
	if err := b.Set(ctxTimeout(t, 20*time.Millisecond), 0, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set while the Lock is held = %v", err)
	}
	if err := b.CopyFrom(ctxTimeout(t, 20*time.Millisecond), []int16{1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CopyFrom while the Lock is held = %v", err)
	}
	l.Release()
	if got, _ := b.Get(ctx, 2); got != 3 {
		t.Fatalf("b[2] = %d", got)
	}

	// After Close.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 0 || a.Slice() != nil {
		t.Error("Len or Slice after Close")
	}
	if _, err := a.Get(ctx, 0); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if err := a.Set(ctx, 0, 1); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Set after Close = %v", err)
	}
	if err := a.CopyFrom(ctx, []float64{1}); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("CopyFrom after Close = %v", err)
	}
	if err := a.CopyTo(ctx, out); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("CopyTo after Close = %v", err)
	}
	var zero mp.Array[float64]
	if _, err := zero.Get(ctx, 0); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Get of a zero Array = %v", err)
	}
}

func TestRawArray(t *testing.T) {
	a, err := mp.NewRawArrayFrom([]point{{X: 1}, {X: 2}, {X: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 3 {
		t.Fatalf("Len = %d", a.Len())
	}
	if p, err := a.Get(1); err != nil || p.X != 2 {
		t.Fatalf("Get(1) = %+v, %v", p, err)
	}
	if err := a.Set(2, point{Tag: 7}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{-1, 3} {
		if _, err := a.Get(i); !errors.Is(err, mp.ErrIndexOutOfRange) {
			t.Errorf("Get(%d) = %v", i, err)
		}
		if err := a.Set(i, point{}); !errors.Is(err, mp.ErrIndexOutOfRange) {
			t.Errorf("Set(%d) = %v", i, err)
		}
	}
	if err := a.CopyFrom(make([]point, 4)); !errors.Is(err, mp.ErrIndexOutOfRange) {
		t.Errorf("CopyFrom too long = %v", err)
	}
	if err := a.CopyTo(make([]point, 4)); !errors.Is(err, mp.ErrIndexOutOfRange) {
		t.Errorf("CopyTo too long = %v", err)
	}
	s := a.Slice()
	s[0].Valid = true
	if p, _ := a.Get(0); !p.Valid {
		t.Fatal("Slice is not a view")
	}
	a.Close()
	if _, err := a.Get(0); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if err := a.CopyFrom(nil); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("CopyFrom after Close = %v", err)
	}
}

func TestArraySizes(t *testing.T) {
	for _, n := range []int{-1, -1 << 40} {
		if _, err := mp.NewArray[float64](n); !errors.Is(err, mp.ErrInvalidSize) {
			t.Errorf("NewArray(%d) = %v", n, err)
		}
		if _, err := mp.NewRawArray[byte](n); !errors.Is(err, mp.ErrInvalidSize) {
			t.Errorf("NewRawArray(%d) = %v", n, err)
		}
	}
	// Sizes that overflow, or pass what one object may hold.
	if _, err := mp.NewRawArray[float64](1 << 61); !errors.Is(err, mp.ErrInvalidSize) {
		t.Errorf("NewRawArray(1<<61) = %v", err)
	}
	if _, err := mp.NewRawArray[[1 << 20]byte](1 << 30); !errors.Is(err, mp.ErrInvalidSize) {
		t.Errorf("2^50 bytes = %v", err)
	}
	// Empty arrays work, and travel.
	e := newArray[int32](t, 0)
	re := newRawArray[int32](t, 0)
	if e.Len() != 0 || re.Len() != 0 {
		t.Fatal("Len of an empty array")
	}
	if _, err := e.Get(ctxTimeout(t, time.Second), 0); !errors.Is(err, mp.ErrIndexOutOfRange) {
		t.Errorf("Get(0) of an empty Array = %v", err)
	}
	if err := re.CopyFrom(nil); err != nil {
		t.Error(err)
	}
	c1, c2 := pipe(t, true)
	if err := c1.Send([]any{e, re}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		_  struct{} `cbor:",toarray"`
		E  *mp.Array[int32]
		RE *mp.RawArray[int32]
	}
	if err := c2.Recv(&got); err != nil {
		t.Fatal(err)
	}
	if got.E.Len() != 0 || got.RE.Len() != 0 {
		t.Fatal("received empty arrays are not empty")
	}
}

func TestArrayAcrossProcesses(t *testing.T) {
	a := newArray[float64](t, 1000)
	ra := newRawArray[point](t, 10)
	runShared(t, sharedArgs{A: a, RA: ra, Op: "set", N: 3})
	got := make([]float64, a.Len())
	if err := a.CopyTo(ctxTimeout(t, 10*time.Second), got); err != nil {
		t.Fatal(err)
	}
	for i, x := range got {
		if x != float64(3*i) {
			t.Fatalf("a[%d] = %v after the child wrote", i, x)
		}
	}
	for i, p := range ra.Slice() {
		if p != (point{X: float64(i), Tag: 3, Valid: true}) {
			t.Fatalf("ra[%d] = %+v after the child wrote", i, p)
		}
	}
}

func TestArrayGrandchild(t *testing.T) {
	a := newArray[float64](t, 10, mp.WithLock(newLock(t)))
	ra := newRawArray[point](t, 2)
	runShared(t, sharedArgs{A: a, RA: ra, Op: "nested", N: 5})
	if got, _ := a.Get(ctxTimeout(t, 10*time.Second), 9); got != 45 {
		t.Fatalf("a[9] = %v after the grandchild wrote", got)
	}
	if p, _ := ra.Get(1); p.Tag != 5 {
		t.Fatalf("ra[1] = %+v after the grandchild wrote", p)
	}
}

func TestArrayCopyRoundTrip(t *testing.T) {
	const n = 100000
	ctx := ctxTimeout(t, 10*time.Second)
	src := make([]float64, n)
	for i := range src {
		src[i] = float64(i) * 1.25
	}
	a := newArray[float64](t, n)
	ra := newRawArray[float64](t, n)
	for round := range 3 {
		src[round] = -1
		if err := a.CopyFrom(ctx, src); err != nil {
			t.Fatal(err)
		}
		if err := ra.CopyFrom(src); err != nil {
			t.Fatal(err)
		}
		out := make([]float64, n)
		if err := a.CopyTo(ctx, out); err != nil || !slices.Equal(out, src) {
			t.Fatalf("round %d: Array round trip differs (%v)", round, err)
		}
		clear(out)
		if err := ra.CopyTo(out); err != nil || !slices.Equal(out, src) {
			t.Fatalf("round %d: RawArray round trip differs (%v)", round, err)
		}
	}
	// Structs, through NewArrayFrom and a child.
	ps := make([]point, 100)
	for i := range ps {
		ps[i] = point{X: float64(i), Y: -float64(i), Tag: int32(i), Valid: i%2 == 0, Hist: [3]uint16{uint16(i)}}
	}
	pa, err := mp.NewArrayFrom(ps)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]point, len(ps))
	if err := pa.CopyTo(ctx, out); err != nil || !slices.Equal(out, ps) {
		t.Fatalf("struct round trip differs (%v)", err)
	}
	c1, c2 := pipe(t, true)
	if err := c1.Send(pa); err != nil {
		t.Fatal(err)
	}
	var back *mp.Array[point]
	if err := c2.Recv(&back); err != nil {
		t.Fatal(err)
	}
	clear(out)
	if err := back.CopyTo(ctx, out); err != nil || !slices.Equal(out, ps) {
		t.Fatalf("received struct Array differs (%v)", err)
	}
}

// BenchmarkArrayCopy measures bulk copies of 100 000 float64 (800 kB) into
// and out of shared memory, as the float_channel workload does per
// message.
func BenchmarkArrayCopy(b *testing.B) {
	const n = 100000
	buf := make([]float64, n)
	for i := range buf {
		buf[i] = float64(i)
	}
	raw := newRawArray[float64](b, n)
	l, err := mp.NewLock()
	if err != nil {
		b.Fatal(err)
	}
	locked := newArray[float64](b, n, mp.WithLock(l))
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		op   func() error
	}{
		{"RawArray/CopyFrom", func() error { return raw.CopyFrom(buf) }},
		{"RawArray/CopyTo", func() error { return raw.CopyTo(buf) }},
		{"Array/CopyFrom", func() error { return locked.CopyFrom(ctx, buf) }},
		{"Array/CopyTo", func() error { return locked.CopyTo(ctx, buf) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(n * 8)
			for b.Loop() {
				if err := bc.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

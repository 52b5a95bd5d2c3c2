//go:build linux

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

// testCtx bounds a test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start starts a manager server child for the test.
func start(t *testing.T) *manager.Manager {
	t.Helper()
	m, err := manager.Start(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestDict(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))

	v, ok, err := d.Get(ctx, "missing")
	check(t, err)
	if ok || v != 0 {
		t.Errorf("Get(missing) = %v, %v", v, ok)
	}
	for i, k := range []string{"c", "a", "b"} {
		check(t, d.Set(ctx, k, i))
	}
	check(t, d.Set(ctx, "c", 10))
	v, ok, err = d.Get(ctx, "c")
	check(t, err)
	equal(t, "Get(c)", [2]any{v, ok}, [2]any{10, true})
	equal(t, "Len", must[int](t)(d.Len(ctx)), 3)
	equal(t, "Keys", must[[]string](t)(d.Keys(ctx)), []string{"c", "a", "b"}) // insertion order
	equal(t, "Values", must[[]int](t)(d.Values(ctx)), []int{10, 1, 2})
	items := must[[]manager.Item[string, int]](t)(d.Items(ctx))
	if len(items) != 3 || items[1].Key != "a" || items[1].Value != 1 {
		t.Errorf("Items = %+v", items)
	}
	equal(t, "Map", must[map[string]int](t)(d.Map(ctx)), map[string]int{"a": 1, "b": 2, "c": 10})
	equal(t, "Contains(a)", must[bool](t)(d.Contains(ctx, "a")), true)
	equal(t, "Contains(z)", must[bool](t)(d.Contains(ctx, "z")), false)
	equal(t, "Delete(a)", must[bool](t)(d.Delete(ctx, "a")), true)
	equal(t, "Delete(a) again", must[bool](t)(d.Delete(ctx, "a")), false)
	equal(t, "SetDefault(b)", must[int](t)(d.SetDefault(ctx, "b", 99)), 2)
	equal(t, "SetDefault(d)", must[int](t)(d.SetDefault(ctx, "d", 4)), 4)
	v, ok, err = d.Pop(ctx, "b")
	check(t, err)
	equal(t, "Pop(b)", [2]any{v, ok}, [2]any{2, true})
	_, ok, err = d.Pop(ctx, "b")
	check(t, err)
	equal(t, "Pop(b) again", ok, false)
	check(t, d.UpdateItems(ctx, manager.Item[string, int]{Key: "x", Value: 7}, manager.Item[string, int]{Key: "c", Value: 11}))
	check(t, d.Update(ctx, map[string]int{"y": 8}))
	equal(t, "Keys after updates", must[[]string](t)(d.Keys(ctx)), []string{"c", "d", "x", "y"})
	it, ok, err := d.PopItem(ctx)
	check(t, err)
	if !ok || it.Key != "y" || it.Value != 8 {
		t.Errorf("PopItem = %+v, %v", it, ok)
	}
	check(t, d.Clear(ctx))
	equal(t, "Len after Clear", must[int](t)(d.Len(ctx)), 0)
	_, ok, err = d.PopItem(ctx)
	check(t, err)
	equal(t, "PopItem on empty", ok, false)

	// Many deletions compact the dict and keep its order.
	for i := range 200 {
		check(t, d.Set(ctx, fmt.Sprint(i), i))
	}
	for i := 0; i < 200; i += 2 {
		must[bool](t)(d.Delete(ctx, fmt.Sprint(i)))
	}
	keys := must[[]string](t)(d.Keys(ctx))
	if len(keys) != 100 || keys[0] != "1" || keys[99] != "199" {
		t.Errorf("Keys after deletions: %d keys, %v...", len(keys), keys[:3])
	}

	// Integer keys of different Go types are the same key.
	di := must[*manager.Dict[int64, string]](t)(manager.NewDict[int64, string](ctx, m))
	check(t, di.Set(ctx, 300, "x"))
	du := &manager.Dict[uint16, string]{}
	b, err := di.MarshalCBOR()
	check(t, err)
	check(t, du.UnmarshalCBOR(b))
	s, ok, err := du.Get(ctx, 300)
	check(t, err)
	equal(t, "Get through another key type", [2]any{s, ok}, [2]any{"x", true})
}

type point struct {
	X, Y int
}

func TestDictStructKeysAndValues(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	d := must[*manager.Dict[point, map[string]float64]](t)(manager.NewDict[point, map[string]float64](ctx, m))
	want := map[string]float64{"a": 1.5, "b": -2, "c": 1e300}
	check(t, d.Set(ctx, point{1, 2}, want))
	got, ok, err := d.Get(ctx, point{1, 2})
	check(t, err)
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %v, %v", got, ok)
	}
	// Maps encode deterministically: an equal map is an equal value.
	l := must[*manager.List[map[string]int]](t)(manager.NewList[map[string]int](ctx, m, nil))
	for range 5 {
		check(t, l.Append(ctx, map[string]int{"x": 1, "y": 2, "z": 3, "w": 4}))
	}
	equal(t, "Count", must[int](t)(l.Count(ctx, map[string]int{"w": 4, "z": 3, "y": 2, "x": 1})), 5)
}

func TestList(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	l := must[*manager.List[int]](t)(manager.NewList(ctx, m, []int{1, 2, 3}))
	check(t, l.Append(ctx, 4))
	check(t, l.Extend(ctx, []int{5, 6}))
	equal(t, "All", must[[]int](t)(l.All(ctx)), []int{1, 2, 3, 4, 5, 6})
	equal(t, "Get(0)", must[int](t)(l.Get(ctx, 0)), 1)
	equal(t, "Get(-1)", must[int](t)(l.Get(ctx, -1)), 6)
	if _, err := l.Get(ctx, 6); !errors.Is(err, manager.ErrIndex) {
		t.Errorf("Get(6): %v, want ErrIndex", err)
	}
	if _, err := l.Get(ctx, -7); !errors.Is(err, manager.ErrIndex) {
		t.Errorf("Get(-7): %v, want ErrIndex", err)
	}
	check(t, l.Set(ctx, 1, 20))
	check(t, l.Insert(ctx, 0, 0))
	check(t, l.Insert(ctx, 100, 7))
	check(t, l.Insert(ctx, -1, 65))
	equal(t, "All", must[[]int](t)(l.All(ctx)), []int{0, 1, 20, 3, 4, 5, 6, 65, 7})
	equal(t, "Pop(-1)", must[int](t)(l.Pop(ctx, -1)), 7)
	equal(t, "Pop(0)", must[int](t)(l.Pop(ctx, 0)), 0)
	equal(t, "Remove(65)", must[bool](t)(l.Remove(ctx, 65)), true)
	equal(t, "Remove(65) again", must[bool](t)(l.Remove(ctx, 65)), false)
	equal(t, "Index(3)", must[int](t)(l.Index(ctx, 3)), 2)
	equal(t, "Index(99)", must[int](t)(l.Index(ctx, 99)), -1)
	check(t, l.Append(ctx, 3))
	equal(t, "Count(3)", must[int](t)(l.Count(ctx, 3)), 2)
	equal(t, "Len", must[int](t)(l.Len(ctx)), 7)
	equal(t, "Slice(1, 3)", must[[]int](t)(l.Slice(ctx, 1, 3)), []int{20, 3})
	equal(t, "Slice(-2, 100)", must[[]int](t)(l.Slice(ctx, -2, 100)), []int{6, 3})
	equal(t, "Slice(5, 2)", must[[]int](t)(l.Slice(ctx, 5, 2)), []int{})
	check(t, l.SetSlice(ctx, 0, 2, []int{9}))
	equal(t, "after SetSlice", must[[]int](t)(l.All(ctx)), []int{9, 3, 4, 5, 6, 3})
	check(t, l.Reverse(ctx))
	equal(t, "after Reverse", must[[]int](t)(l.All(ctx)), []int{3, 6, 5, 4, 3, 9})
	check(t, l.Clear(ctx))
	equal(t, "Len after Clear", must[int](t)(l.Len(ctx)), 0)
	if _, err := l.Pop(ctx, -1); !errors.Is(err, manager.ErrIndex) {
		t.Errorf("Pop on empty: %v, want ErrIndex", err)
	}
}

func TestArrayNamespaceValue(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)

	a := must[*manager.Array[float64]](t)(manager.NewArray(ctx, m, []float64{0, 0.5, 1}))
	check(t, a.Set(ctx, -1, 2))
	equal(t, "Get(2)", must[float64](t)(a.Get(ctx, 2)), 2.0)
	equal(t, "Len", must[int](t)(a.Len(ctx)), 3)
	check(t, a.SetSlice(ctx, 0, 2, []float64{7, 8}))
	equal(t, "All", must[[]float64](t)(a.All(ctx)), []float64{7, 8, 2})
	if err := a.SetSlice(ctx, 0, 2, []float64{1}); !errors.Is(err, manager.ErrIndex) {
		t.Errorf("resizing SetSlice: %v, want ErrIndex", err)
	}
	if _, err := a.Get(ctx, 3); !errors.Is(err, manager.ErrIndex) {
		t.Errorf("Get(3): %v", err)
	}

	ns := must[*manager.Namespace](t)(manager.NewNamespace(ctx, m))
	check(t, ns.Set(ctx, "name", "worker"))
	check(t, ns.Set(ctx, "count", 3))
	check(t, ns.Set(ctx, "where", point{1, 2}))
	var name string
	check(t, ns.Get(ctx, "name", &name))
	equal(t, "name", name, "worker")
	equal(t, "count", must[int](t)(manager.Field[int](ctx, ns, "count")), 3)
	equal(t, "where", must[point](t)(manager.Field[point](ctx, ns, "where")), point{1, 2})
	if err := ns.Get(ctx, "nope", &name); !errors.Is(err, manager.ErrNoField) {
		t.Errorf("Get(nope): %v, want ErrNoField", err)
	}
	equal(t, "Fields", must[[]string](t)(ns.Fields(ctx)), []string{"count", "name", "where"})
	equal(t, "Delete", must[bool](t)(ns.Delete(ctx, "count")), true)
	equal(t, "Fields", must[[]string](t)(ns.Fields(ctx)), []string{"name", "where"})

	v := must[*manager.Value[string]](t)(manager.NewValue(ctx, m, "a"))
	equal(t, "Get", must[string](t)(v.Get(ctx)), "a")
	check(t, v.Set(ctx, "b"))
	equal(t, "Swap", must[string](t)(v.Swap(ctx, "c")), "b")
	equal(t, "CAS(b)", must[bool](t)(v.CompareAndSwap(ctx, "b", "d")), false)
	equal(t, "CAS(c)", must[bool](t)(v.CompareAndSwap(ctx, "c", "d")), true)
	equal(t, "Get", must[string](t)(v.Get(ctx)), "d")
}

func TestQueue(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	q := must[*manager.Queue[string]](t)(manager.NewQueue[string](ctx, m, 2))
	equal(t, "Empty", must[bool](t)(q.Empty(ctx)), true)
	check(t, q.Put(ctx, "a"))
	check(t, q.TryPut(ctx, "b"))
	equal(t, "Full", must[bool](t)(q.Full(ctx)), true)
	if err := q.TryPut(ctx, "c"); !errors.Is(err, mp.ErrFull) {
		t.Errorf("TryPut on a full queue: %v", err)
	}
	// A Put that waits for room is cancelled by its ctx, and its item
	// never enters.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := q.Put(short, "never")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put on a full queue: %v, want DeadlineExceeded", err)
	}
	// A Put that waits gets in once room is made.
	done := make(chan error, 1)
	go func() { done <- q.Put(ctx, "c") }()
	waitFor(t, func() bool { n, _ := q.Qsize(ctx); return n == 2 })
	time.Sleep(20 * time.Millisecond)
	equal(t, "Get", must[string](t)(q.Get(ctx)), "a")
	check(t, <-done)
	equal(t, "Get", must[string](t)(q.Get(ctx)), "b")
	equal(t, "Get", must[string](t)(q.Get(ctx)), "c")
	if _, err := q.TryGet(ctx); !errors.Is(err, mp.ErrEmpty) {
		t.Errorf("TryGet on an empty queue: %v", err)
	}
	// A cancelled Get takes nothing: the next item goes to the next Get.
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = q.Get(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get on an empty queue: %v, want DeadlineExceeded", err)
	}
	check(t, q.Put(ctx, "d"))
	equal(t, "TryGet", must[string](t)(q.TryGet(ctx)), "d")

	// Waiting getters are served in order.
	got := make(chan string, 3)
	for i := range 3 {
		go func() {
			v, err := q.Get(ctx)
			if err != nil {
				v = err.Error()
			}
			got <- fmt.Sprint(i, v)
		}()
		waitFor(t, func() bool { return serverWaiters(t, m) > i })
	}
	for _, s := range []string{"x", "y", "z"} {
		check(t, q.Put(ctx, s))
	}
	var res []string
	for range 3 {
		res = append(res, <-got)
	}
	sort.Strings(res)
	equal(t, "getters", res, []string{"0x", "1y", "2z"})
}

// serverWaiters is the number of operations waiting in m's server.
func serverWaiters(t *testing.T, m *manager.Manager) int {
	t.Helper()
	st, err := m.Stats(context.Background())
	check(t, err)
	return st.Waiting
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJoinableQueue(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	q := must[*manager.JoinableQueue[int]](t)(manager.NewJoinableQueue[int](ctx, m, 0))
	check(t, q.Join(ctx)) // nothing put yet
	for i := range 3 {
		check(t, q.Put(ctx, i))
	}
	joined := make(chan error, 1)
	go func() { joined <- q.Join(ctx) }()
	for range 3 {
		must[int](t)(q.Get(ctx))
		select {
		case err := <-joined:
			t.Fatalf("Join returned early: %v", err)
		default:
		}
		check(t, q.TaskDone(ctx))
	}
	check(t, <-joined)
	if err := q.TaskDone(ctx); !errors.Is(err, mp.ErrTaskDone) {
		t.Errorf("extra TaskDone: %v", err)
	}
	// A JoinableQueue proxy decodes as a Queue, not the other way round.
	b := must[[]byte](t)(q.MarshalCBOR())
	var plain manager.Queue[int]
	check(t, plain.UnmarshalCBOR(b))
	pq := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0))
	var jq manager.JoinableQueue[int]
	if err := jq.UnmarshalCBOR(must[[]byte](t)(pq.MarshalCBOR())); !errors.Is(err, manager.ErrWrongKind) {
		t.Errorf("Queue into JoinableQueue: %v", err)
	}
}

func TestLocks(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
	check(t, l.Acquire(ctx))
	equal(t, "Locked", must[bool](t)(l.Locked(ctx)), true)
	equal(t, "TryAcquire while held", must[bool](t)(l.TryAcquire(ctx)), false)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := l.Acquire(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire of a held Lock: %v", err)
	}
	// Any goroutine may release a Lock; a waiter gets it.
	got := make(chan error, 1)
	go func() { got <- l.Acquire(ctx) }()
	waitFor(t, func() bool { return serverWaiters(t, m) > 0 })
	check(t, l.Release(ctx))
	check(t, <-got)
	check(t, l.Release(ctx))
	if err := l.Release(ctx); !errors.Is(err, mp.ErrNotHeld) {
		t.Errorf("Release of an unlocked Lock: %v", err)
	}

	r := must[*manager.RLock](t)(manager.NewRLock(ctx, m))
	check(t, r.Acquire(ctx))
	check(t, r.Acquire(ctx))
	held, depth, err := r.Held(ctx)
	check(t, err)
	equal(t, "Held", [2]any{held, depth}, [2]any{true, 2})
	other := make(chan error, 1)
	go func() {
		// Another goroutine neither holds nor can release it.
		if err := r.Release(ctx); !errors.Is(err, mp.ErrNotHeld) {
			other <- fmt.Errorf("Release by another goroutine: %v", err)
			return
		}
		ok, err := r.TryAcquire(ctx)
		if ok || err != nil {
			other <- fmt.Errorf("TryAcquire by another goroutine: %v, %v", ok, err)
			return
		}
		other <- nil
	}()
	check(t, <-other)
	check(t, r.Release(ctx))
	check(t, r.Release(ctx))
	if err := r.Release(ctx); !errors.Is(err, mp.ErrNotHeld) {
		t.Errorf("extra Release: %v", err)
	}
}

func TestSemaphores(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	s := must[*manager.Semaphore](t)(manager.NewSemaphore(ctx, m, 2))
	check(t, s.Acquire(ctx))
	equal(t, "TryAcquire", must[bool](t)(s.TryAcquire(ctx)), true)
	equal(t, "TryAcquire at 0", must[bool](t)(s.TryAcquire(ctx)), false)
	equal(t, "Value", must[int](t)(s.Value(ctx)), 0)
	check(t, s.Release(ctx))
	check(t, s.Release(ctx))
	check(t, s.Release(ctx)) // a plain Semaphore may rise
	equal(t, "Value", must[int](t)(s.Value(ctx)), 3)

	b := must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 1))
	if err := b.Release(ctx); !errors.Is(err, mp.ErrReleasedTooManyTimes) {
		t.Errorf("Release past the bound: %v", err)
	}
	check(t, b.Acquire(ctx))
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := b.Acquire(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire at 0: %v", err)
	}
	check(t, b.Release(ctx))
	equal(t, "Value", must[int](t)(b.Value(ctx)), 1)
}

func TestEventAndCondition(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	e := must[*manager.Event](t)(manager.NewEvent(ctx, m))
	equal(t, "IsSet", must[bool](t)(e.IsSet(ctx)), false)
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	err := e.Wait(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait: %v", err)
	}
	waited := make(chan error, 2)
	for range 2 {
		go func() { waited <- e.Wait(ctx) }()
	}
	waitFor(t, func() bool { return serverWaiters(t, m) >= 2 })
	check(t, e.Set(ctx))
	check(t, <-waited)
	check(t, <-waited)
	check(t, e.Wait(ctx))
	check(t, e.Clear(ctx))
	equal(t, "IsSet after Clear", must[bool](t)(e.IsSet(ctx)), false)

	for _, lockKind := range []string{"own RLock", "Lock", "RLock"} {
		t.Run(lockKind, func(t *testing.T) {
			var lock manager.Locker
			switch lockKind {
			case "Lock":
				lock = must[*manager.Lock](t)(manager.NewLock(ctx, m))
			case "RLock":
				lock = must[*manager.RLock](t)(manager.NewRLock(ctx, m))
			}
			c := must[*manager.Condition](t)(manager.NewCondition(ctx, m, lock))
			if err := c.Wait(ctx); !errors.Is(err, mp.ErrNotHeld) {
				t.Errorf("Wait without the lock: %v", err)
			}
			if err := c.Notify(ctx, 1); !errors.Is(err, mp.ErrNotHeld) {
				t.Errorf("Notify without the lock: %v", err)
			}
			state := must[*manager.Value[int]](t)(manager.NewValue(ctx, m, 0))
			woke := make(chan error, 1)
			go func() {
				woke <- func() error {
					if err := c.Acquire(ctx); err != nil {
						return err
					}
					defer c.Release(ctx)
					return c.WaitFor(ctx, func() bool {
						v, err := state.Get(ctx)
						return err == nil && v == 2
					})
				}()
			}()
			for i := 1; i <= 2; i++ {
				waitFor(t, func() bool { return serverWaiters(t, m) > 0 })
				check(t, c.Acquire(ctx))
				check(t, state.Set(ctx, i))
				check(t, c.NotifyAll(ctx))
				check(t, c.Release(ctx))
			}
			check(t, <-woke)

			// A Wait cancelled by its ctx returns with the lock held.
			check(t, c.Acquire(ctx))
			short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			err := c.Wait(short)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Wait: %v", err)
			}
			check(t, c.Notify(ctx, 1)) // still held
			check(t, c.Release(ctx))
		})
	}
}

func TestBarrier(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	b := must[*manager.Barrier](t)(manager.NewBarrier(ctx, m, 3, 0))
	equal(t, "Parties", must[int](t)(b.Parties(ctx)), 3)
	for round := range 3 {
		idx := make(chan int, 3)
		for range 3 {
			go func() {
				i, err := b.Wait(ctx)
				if err != nil {
					t.Error(err)
				}
				idx <- i
			}()
		}
		var got []int
		for range 3 {
			got = append(got, <-idx)
		}
		slices.Sort(got)
		equal(t, fmt.Sprint("indexes of round ", round), got, []int{0, 1, 2})
	}
	// A cancelled Wait breaks the barrier for the others.
	other := make(chan error, 1)
	go func() { _, err := b.Wait(ctx); other <- err }()
	waitFor(t, func() bool { n, _ := b.NWaiting(ctx); return n == 1 })
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	_, err := b.Wait(short)
	cancel()
	if !errors.Is(err, mp.ErrBrokenBarrier) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled Wait: %v", err)
	}
	if err := <-other; !errors.Is(err, mp.ErrBrokenBarrier) {
		t.Errorf("other Wait: %v", err)
	}
	equal(t, "Broken", must[bool](t)(b.Broken(ctx)), true)
	if _, err := b.Wait(ctx); !errors.Is(err, mp.ErrBrokenBarrier) {
		t.Errorf("Wait on a broken barrier: %v", err)
	}
	check(t, b.Reset(ctx))
	equal(t, "Broken after Reset", must[bool](t)(b.Broken(ctx)), false)
	check(t, b.Abort(ctx))
	if _, err := b.Wait(ctx); !errors.Is(err, mp.ErrBrokenBarrier) {
		t.Errorf("Wait on an aborted barrier: %v", err)
	}
	// The barrier's own timeout.
	bt := must[*manager.Barrier](t)(manager.NewBarrier(ctx, m, 2, 30*time.Millisecond))
	if _, err := bt.Wait(ctx); !errors.Is(err, mp.ErrBrokenBarrier) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past the barrier's timeout: %v", err)
	}
}

func TestNamedObjects(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	q1 := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0, manager.Named("jobs")))
	q2 := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 5, manager.Named("jobs")))
	check(t, q1.Put(ctx, 42))
	equal(t, "Get through the other proxy", must[int](t)(q2.Get(ctx)), 42)
	if _, err := manager.NewDict[string, int](ctx, m, manager.Named("jobs")); !errors.Is(err, manager.ErrWrongKind) {
		t.Errorf("a Dict named like a Queue: %v", err)
	}
	// A name keeps its object alive after every proxy is forgotten.
	check(t, q1.Forget(ctx))
	check(t, q2.Put(ctx, 7))
	check(t, q2.Forget(ctx))
	q3 := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0, manager.Named("jobs")))
	equal(t, "Get", must[int](t)(q3.Get(ctx)), 7)
}

func TestForgetFreesObjects(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	objects := func() int {
		st, err := m.Stats(ctx)
		check(t, err)
		return st.Objects
	}
	base := objects()
	d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
	equal(t, "objects", objects(), base+1)
	check(t, d.Forget(ctx))
	equal(t, "objects after Forget", objects(), base)
	if _, _, err := d.Get(ctx, "x"); !errors.Is(err, manager.ErrNoObject) {
		t.Errorf("Get after Forget: %v, want ErrNoObject", err)
	}
}

func TestZeroProxy(t *testing.T) {
	var d manager.Dict[string, int]
	if _, _, err := d.Get(context.Background(), "x"); err == nil {
		t.Error("zero Dict worked")
	}
	if _, err := d.MarshalCBOR(); err == nil {
		t.Error("zero Dict marshalled")
	}
}

// TestLargeValues sends values larger than the connections' buffers.
func TestLargeValues(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	d := must[*manager.Dict[string, []byte]](t)(manager.NewDict[string, []byte](ctx, m))
	for _, n := range []int{0, 4 << 10, 100 << 10, 3 << 20} {
		big := make([]byte, n)
		for i := range big {
			big[i] = byte(i * 7)
		}
		check(t, d.Set(ctx, "big", big))
		got, ok, err := d.Get(ctx, "big")
		check(t, err)
		if !ok || !slices.Equal(got, big) {
			t.Fatalf("a %d-byte value came back as %d bytes", n, len(got))
		}
	}
	q := must[*manager.Queue[string]](t)(manager.NewQueue[string](ctx, m, 0))
	s := string(make([]byte, 2<<20))
	check(t, q.Put(ctx, s))
	equal(t, "queue item length", len(must[string](t)(q.Get(ctx))), len(s))
}

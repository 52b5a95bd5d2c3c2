//go:build linux

package mp_test

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// callbackPanics collects what a pool reports of its callbacks' panics.
type callbackPanics struct {
	mu     sync.Mutex
	values []any
	stacks []string
}

func (c *callbackPanics) report(v any, stack []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.values = append(c.values, v)
	c.stacks = append(c.stacks, string(stack))
}

func (c *callbackPanics) check(t *testing.T, want ...string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.values) != len(want) {
		t.Fatalf("%d panics reported (%v), want %d", len(c.values), c.values, len(want))
	}
	for i, w := range want {
		if c.values[i] != w || !strings.Contains(c.stacks[i], "panicInCallback") {
			t.Errorf("report %d: %v with stack\n%s\nwant %q and a stack through panicInCallback", i, c.values[i], c.stacks[i], w)
		}
	}
}

func panicInCallback(v string) { panic(v) }

// Issue 10 point 17: a panicking callback does not kill the process: the
// panic is reported with its stack, the next callbacks run and the pool
// goes on delivering results.
func TestPoolCallbackPanicIsReported(t *testing.T) {
	var got callbackPanics
	pool := newPool(t, mp.PoolOptions{Processes: 1, CallbackPanic: got.report})
	ctx := ctxTimeout(t, 30*time.Second)
	var ran sync.WaitGroup
	ran.Add(3)
	r1 := double.ApplyAsync(context.Background(), pool, 1, func(int) { ran.Done(); panicInCallback("callback") }, nil)
	r2 := poolJobFn.ApplyAsync(context.Background(), pool, poolJob{Mode: "error"}, nil, func(error) { ran.Done(); panicInCallback("error callback") })
	r3 := double.ApplyAsync(context.Background(), pool, 3, func(int) { ran.Done() }, nil)
	if v, err := r1.Get(ctx); v != 2 || err != nil {
		t.Errorf("first = %d, %v", v, err)
	}
	if _, err := r2.Get(ctx); err == nil {
		t.Error("the failing task succeeded")
	}
	if v, err := r3.Get(ctx); v != 6 || err != nil {
		t.Errorf("third = %d, %v", v, err)
	}
	ran.Wait()
	items := []int{1, 2, 3, 4}
	out, err := double.Map(ctx, pool, items, 1, mp.WithProgress(func(done, total int) {
		if done == 2 {
			panicInCallback("progress")
		}
	}))
	if err != nil || len(out) != 4 || out[3] != 8 {
		t.Errorf("Map with a panicking progress = %v, %v", out, err)
	}
	got.check(t, "callback", "error callback", "progress")
}

func TestExecutorDoneCallbackPanicIsReported(t *testing.T) {
	var got callbackPanics
	ex := newExecutor(t, mp.PoolOptions{Processes: 1, CallbackPanic: got.report})
	ctx := ctxTimeout(t, 30*time.Second)
	fut := double.Submit(context.Background(), ex, 5)
	var second sync.WaitGroup
	second.Add(1)
	fut.AddDoneCallback(func(*mp.Future[int]) { panicInCallback("first") })
	fut.AddDoneCallback(func(*mp.Future[int]) { second.Done() })
	if v, err := fut.Result(ctx); v != 10 || err != nil {
		t.Fatalf("Result = %d, %v", v, err)
	}
	second.Wait()
	// Added once it is done: it runs here, and is reported the same way.
	fut.AddDoneCallback(func(*mp.Future[int]) { panicInCallback("late") })
	if v, err := double.Submit(context.Background(), ex, 6).Result(ctx); v != 12 || err != nil {
		t.Fatalf("next Result = %d, %v", v, err)
	}
	got.check(t, "first", "late")
}

// Without a CallbackPanic hook, the panic and its stack go to stderr.
func TestPoolCallbackPanicGoesToStderr(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	res := double.ApplyAsync(context.Background(), pool, 1, func(int) { panicInCallback("to stderr") }, nil)
	_, err = res.Get(ctx)
	next, err2 := double.Apply(ctx, pool, 2)
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	r.Close()
	if err != nil || err2 != nil || next != 4 {
		t.Fatalf("results: %v, %d, %v", err, next, err2)
	}
	if s := string(out); !strings.Contains(s, "to stderr") || !strings.Contains(s, "panicInCallback") {
		t.Errorf("stderr: %q", s)
	}
}

//go:build linux

package codec

import (
	"reflect"
	"sync"
	"testing"
)

// TestTypeCache asks about more types than the recent entries hold, in
// turn and from several goroutines: every answer is the one computed for
// its type, each computed once when asked in turn, and clear forgets them.
func TestTypeCache(t *testing.T) {
	types := []reflect.Type{
		reflect.TypeFor[int](), reflect.TypeFor[string](), reflect.TypeFor[[]byte](),
		reflect.TypeFor[point](), reflect.TypeFor[*point](), reflect.TypeFor[map[string]int](),
		reflect.TypeFor[[3]int8](), reflect.TypeFor[any](),
	}
	var c typeCache[string]
	calls := map[reflect.Type]int{}
	name := func(t reflect.Type) string { calls[t]++; return t.String() }
	for range 3 {
		for _, ty := range types {
			if got := c.get(ty, name); got != ty.String() {
				t.Fatalf("get(%v) = %q", ty, got)
			}
		}
	}
	for _, ty := range types {
		if calls[ty] != 1 {
			t.Errorf("%v computed %d times, want once", ty, calls[ty])
		}
	}
	c.clear()
	c.get(types[0], name)
	if calls[types[0]] != 2 {
		t.Errorf("after clear, %v computed %d times in all, want 2", types[0], calls[types[0]])
	}

	var d typeCache[string]
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				ty := types[(i+g)%len(types)]
				if got := d.get(ty, reflect.Type.String); got != ty.String() {
					t.Errorf("get(%v) = %q", ty, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

//go:build linux

package codec

import (
	"reflect"
	"sync"
	"sync/atomic"
)

// typeCache holds an answer per type that, once computed, never changes
// (until clear). Lookups happen for every message and every pool chunk,
// and nearly always ask about the same one or two types, so a few
// recently used entries are checked before the sync.Map: comparing a
// reflect.Type is a pointer comparison, cheaper than the map's hashing.
type typeCache[V any] struct {
	recent [typeCacheRecent]atomic.Pointer[typeEntry[V]]
	next   atomic.Uint32 // the recent slot the next miss replaces
	all    sync.Map      // reflect.Type -> V
}

// typeCacheRecent is how many recent entries are checked: enough for a
// pool's item and result types and a message's type, few enough that a
// miss costs little.
const typeCacheRecent = 4

type typeEntry[V any] struct {
	t reflect.Type
	v V
}

// get returns the answer for t, computing it with compute on the first
// request. compute may run more than once if two goroutines ask at once;
// the first answer stored is kept and returned to both.
func (c *typeCache[V]) get(t reflect.Type, compute func(reflect.Type) V) V {
	for i := range c.recent {
		if e := c.recent[i].Load(); e != nil && e.t == t {
			return e.v
		}
	}
	v, ok := c.all.Load(t)
	if !ok {
		v, _ = c.all.LoadOrStore(t, compute(t))
	}
	c.recent[c.next.Add(1)%typeCacheRecent].Store(&typeEntry[V]{t: t, v: v.(V)})
	return v.(V)
}

// clear forgets every answer.
func (c *typeCache[V]) clear() {
	for i := range c.recent {
		c.recent[i].Store(nil)
	}
	c.all.Clear()
}

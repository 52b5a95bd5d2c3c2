//go:build linux

package mp

import (
	"testing"
	"time"
)

// A worker is given more tasks at once the quicker its tasks have been,
// and never more than a quarter of its share of the queue, unless the
// queue is short and its tasks quick.
func TestPoolPrefetchFollowsPace(t *testing.T) {
	for _, c := range []struct {
		queue int
		pace  time.Duration
		room  int
	}{
		{queue: 10, pace: 100 * time.Microsecond, room: 1}, // short queue: one at a time
		{queue: 10, pace: time.Microsecond, room: 5},       // unless its tasks are quick: its share
		{queue: 1000, pace: time.Microsecond, room: 125},   // a quarter of its share
		{queue: 100000, pace: time.Microsecond, room: 256}, // maxPrefetch
		{queue: 100000, pace: 100 * time.Microsecond, room: 10},
		{queue: 100000, pace: 50 * time.Millisecond, room: 1}, // slow tasks stay spread
		{queue: 100000, pace: 0, room: 256},
	} {
		p := &Pool{workers: map[*worker]struct{}{}}
		for range 2 {
			p.workers[&worker{ready: true, pace: c.pace}] = struct{}{}
		}
		p.queue = make([]*task, c.queue)
		for i := range p.queue {
			p.queue[i] = &task{}
		}
		w, room := p.pickWorker()
		if w == nil || room != c.room {
			t.Errorf("queue %d, pace %v: room %d, want %d", c.queue, c.pace, room, c.room)
		}
	}
}

//go:build linux

package mp

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// A worker is given more tasks at once the quicker its tasks have been.
// A worker whose tasks are quick takes its share of the queue, up to
// maxPrefetch, unless they are a Map's chunks in a long queue; others hold no more than a quarter of their share, and one
// task at a time while the queue is short.
func TestPoolPrefetchFollowsPace(t *testing.T) {
	for _, c := range []struct {
		queue   int
		pace    time.Duration
		room    int
		encoded bool // a Map's chunks, encoded when sent
	}{
		{queue: 10, pace: 100 * time.Microsecond, room: 1},            // short queue: one at a time
		{queue: 10, pace: time.Microsecond, room: 5},                  // unless its tasks are quick: its share
		{queue: 200, pace: time.Microsecond, room: 100},               // its share, not a quarter of it
		{queue: 200, pace: time.Microsecond, room: 25, encoded: true}, // unless encoded when sent
		{queue: 10, pace: time.Microsecond, room: 5, encoded: true},
		{queue: 1000, pace: time.Microsecond, room: 256}, // maxPrefetch
		{queue: 1000, pace: 100 * time.Microsecond, room: 10},
		{queue: 200, pace: 50 * time.Microsecond, room: 20}, // a quarter of its share
		{queue: 100000, pace: time.Microsecond, room: 256},  // maxPrefetch
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
			if c.encoded {
				p.queue[i].more = &taskMore{encode: func(*bytes.Buffer) error { return nil }}
			}
		}
		w, room := p.pickWorker()
		if w == nil || room != c.room {
			t.Errorf("queue %d, pace %v: room %d, want %d", c.queue, c.pace, room, c.room)
		}
	}
}

// A result that leaves a worker of quick tasks with fewer than it runs in
// refillLead wakes the dispatcher, even in the middle of a burst, so that
// its next tasks arrive before it runs out; one of a slow worker's results
// does so only when the worker is down to refillBelow tasks.
func TestPoolRefillFollowsPace(t *testing.T) {
	for _, c := range []struct {
		pace    time.Duration
		pending int // after the result
		wake    bool
	}{
		{pace: 200 * time.Nanosecond, pending: 50, wake: true},
		{pace: 200 * time.Nanosecond, pending: maxPrefetch / 2, wake: false},
		{pace: time.Microsecond, pending: 19, wake: true},
		{pace: time.Microsecond, pending: 20, wake: false},
		{pace: 100 * time.Microsecond, pending: 5, wake: false},
		{pace: 100 * time.Microsecond, pending: 1, wake: true},
	} {
		p := &Pool{workers: map[*worker]struct{}{}}
		p.wake = sync.NewCond(&p.mu)
		w := &worker{ready: true, pace: c.pace}
		p.workers[w] = struct{}{}
		for i := range c.pending + 1 {
			w.pending = append(w.pending, &task{id: uint64(i + 1)})
		}
		// A dispatcher asleep: once the lock is taken after waiting is
		// true, it is inside Wait.
		waiting, woken := false, make(chan struct{})
		go func() {
			p.mu.Lock()
			waiting = true
			p.wake.Wait()
			p.mu.Unlock()
			close(woken)
		}()
		for {
			p.mu.Lock()
			in := waiting
			p.mu.Unlock()
			if in {
				break
			}
			time.Sleep(time.Millisecond)
		}
		// Busy is the task's own time: the pace stays about the same.
		rs := []taskResult{{ID: 1, Busy: int64(c.pace)}}
		if _, confused, stop := p.settle(w, rs, nil, true); confused || stop {
			t.Fatalf("pace %v: settle confused %v, stop %v", c.pace, confused, stop)
		}
		// A wake is awaited for up to 3 s (no hang); its absence for 50
		// ms: a slow machine can only hide a wrong wake, never fail a
		// right one.
		wait := 50 * time.Millisecond
		if c.wake {
			wait = 3 * time.Second
		}
		woke := false
		select {
		case <-woken:
			woke = true
		case <-time.After(wait):
			p.mu.Lock()
			p.wake.Broadcast() // ends the goroutine
			p.mu.Unlock()
			<-woken
		}
		if woke != c.wake {
			t.Errorf("pace %v, %d tasks left: dispatcher woken %v, want %v", c.pace, c.pending, woke, c.wake)
		}
	}
}

//go:build linux

package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// A Map whose ctx ends while the publication of one of its chunks is
// stuck (held here before it goes out, for good until the test lets it,
// as a publication to a slow or stopped server waits): Map returns
// context.Canceled at once, without waiting for the publication (the
// bound only proves that); the chunks after the stuck one are never
// published, even once it is let go; the pool's Join waits for the
// publication left running; and none of the chunks ever runs (those
// published are purged).
func TestMapCtxEndsDuringPublication(t *testing.T) {
	const stuckAt = 3
	dir := t.TempDir()
	c := startCluster(t, Options{})
	var (
		mu        sync.Mutex
		published []int
		blocked   = make(chan struct{})
		release   = make(chan struct{})
		once      sync.Once
	)
	testHookBeforePublish = func(_ uint64, idx int) {
		mu.Lock()
		published = append(published, idx)
		mu.Unlock()
		if idx == stuckAt {
			once.Do(func() {
				close(blocked)
				<-release
			})
		}
	}
	released := false
	let := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(func() { let(); testHookBeforePublish = nil })
	pool := submitOnly(t, c, mp.PoolOptions{})
	items, ids := sleepies(20)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := sleepy.Map(ctx, pool, items, 1)
		errc <- err
	}()
	select {
	case <-blocked:
	case err := <-errc:
		t.Fatalf("Map returned %v before the publication of chunk %d", err, stuckAt)
	case <-time.After(30 * time.Second):
		t.Fatalf("no publication of chunk %d in 30 s", stuckAt)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Map returned %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("Map did not return within 3 s of its ctx's end: it waits for the stuck publication")
		let()
		<-errc
	}
	let()
	pool.Close()
	if err := pool.Join(testCtx(t, 30*time.Second)); err != nil {
		t.Fatalf("Join: %v", err)
	}
	mu.Lock()
	got := slices.Clone(published)
	mu.Unlock()
	if slices.ContainsFunc(got, func(idx int) bool { return idx > stuckAt }) {
		t.Errorf("chunks published (in order) %v: some after chunk %d, whose publication was under way as the ctx ended", got, stuckAt)
	}
	assertNeverRan(t, c, submitOnly(t, c, mp.PoolOptions{}), dir, ids...)
}

//go:build linux

package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// cutItem records the start of its item (id b[1]) and fails if b[0] is
// not 0; item 0 first waits, 30 s at most, for the file "go" in envDir.
var cutItem = mp.Register("cluster.test.cutitem", func(b []byte) (int, error) {
	id := int(b[1])
	record("start", id)
	if id == 0 {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(os.Getenv(envDir), "go")); err == nil {
				break
			}
		}
	}
	if b[0] != 0 {
		return 0, fmt.Errorf("item %d fails", id)
	}
	return len(b), nil
})

// A chunk cut in parts whose first part fails while the later ones are
// queued (the only worker slot, which ran the first, waits in
// testHookRan): the later parts are cancelled together, one purge of
// their job and one cancellation for all of them, and never run; the
// chunk's error is its first failing item's (item 1, in the first part;
// item 7, in a later part, fails too). Each cancellation is handled by
// cancelLoop before its caller goes on (testHookCancelQueued), so that
// parts cancelled one by one, as on the old code, would show as one
// purge and one cancellation each.
func TestCutChunkPartsCancelledTogether(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envDir, dir) // for the pool's local worker
	var purges atomic.Int32
	handled := make(chan struct{}, 4096)
	testHookPurge = func(string) error { purges.Add(1); return nil }
	testHookCancelDone = func(uint64, int) { handled <- struct{}{} }
	testHookCancelQueued = func(n int) {
		deadline := time.After(30 * time.Second)
		for range n {
			select {
			case <-handled:
			case <-deadline:
				t.Errorf("a cancellation of %d tasks not handled in 30 s", n)
				return
			}
		}
	}
	slotFree := make(chan struct{})
	var freeOnce sync.Once
	release := func() { freeOnce.Do(func() { close(slotFree) }) }
	testHookRan = func() { <-slotFree }
	t.Cleanup(func() { testHookPurge, testHookCancelDone, testHookCancelQueued, testHookRan = nil, nil, nil, nil })

	c := startCluster(t, Options{})
	nc := peerConn(t, c)
	cancels := listen(t, nc, cancelPrefix+c.opts.Pool)
	pool := localWorkerPool(t, c)
	t.Cleanup(release) // before the pool closes
	s := sessionOf(t, c)
	ctx := testCtx(t, 60*time.Second)

	items := make([][]byte, 12)
	for i := range items {
		items[i] = make([]byte, 300<<10)
		items[i][1] = byte(i)
	}
	items[1][0], items[7][0] = 1, 1
	// An Imap takes the chunk size it is given (a Map would size its
	// chunks to the server's messages).
	res := make(chan error, 1)
	go func() {
		var first error
		for _, err := range cutItem.Imap(ctx, pool, slices.Values(items), len(items)) {
			if first == nil {
				first = err
				if first == nil {
					first = errors.New("item 0 succeeded")
				}
			}
		}
		res <- first
	}()

	var cut *cutChunk
	var parts *job
	awaitTrue(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, cc := range s.cuts {
			cut, parts = cc, s.where[cc.parts[0]].j
		}
		return cut != nil
	}, func() string { return "the chunk was not cut" })
	if len(cut.parts) < 3 {
		t.Fatalf("the chunk was cut in %d parts, want 3 at least", len(cut.parts))
	}
	// Every part published (the first one held in its item 0), so that
	// none is cancelled during its publication (its publisher would
	// purge it on its own).
	awaitTrue(t, func() bool {
		for k := range cut.parts {
			if parts.pub[k].Load() != sent {
				return false
			}
		}
		return true
	}, func() string { return "the parts were not all published" })
	awaitStreamMsgs(t, c, uint64(len(cut.parts)))
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !strings.Contains(err.Error(), "item 1 fails") {
		t.Fatalf("the Imap: %v, want item 1's error", err)
	}
	// The worker heard the cancellation of every later part before its
	// slot, released, reads the part it may have been given already.
	awaitTrue(t, func() bool {
		s.local.mu.Lock()
		defer s.local.mu.Unlock()
		for k := 1; k < len(cut.parts); k++ {
			if !s.local.cancelled.has(jobKey{s.inst, parts.n}, uint64(k)) {
				return false
			}
		}
		return true
	}, func() string { return "the worker did not hear the parts' cancellation" })
	if err := errors.Join(c.conn.nc.Flush(), nc.Flush()); err != nil {
		t.Fatal(err)
	}
	if n, m := purges.Load(), len(cancels); n != 1 || m != 1 {
		t.Errorf("%d later parts cancelled with %d purges and %d cancellations, want 1 and 1", len(cut.parts)-1, n, m)
	}
	awaitStreamMsgs(t, c, 0)
	release()
	// The slot's next task runs after what it was given before.
	if v, err := byteLen.Apply(ctx, pool, []byte{1, 2, 3}); err != nil || v != 3 {
		t.Fatalf("the call after: %v, %v", v, err)
	}
	lines := records(t, dir)
	for id := cut.counts[0]; id < len(items); id++ {
		if n := count(lines, "start_"+strconv.Itoa(id)+"_"); n != 0 {
			t.Errorf("item %d of a later part ran %d times", id, n)
		}
	}
	if count(lines, "start_0_") != 1 || count(lines, "start_1_") != 1 {
		t.Errorf("items 0 and 1 did not run once each: %v", lines)
	}
}

//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp"
)

var (
	firstByte = mp.Register("test.firstByte", func(b []byte) (int, error) { return int(b[0]), nil })
	anyOne    = mp.Register("test.anyOne", func(any) (int, error) { return 1, nil })
)

// bigItems returns n byte slices of size bytes, item i filled with byte(i).
func bigItems(n, size int) [][]byte {
	items := make([][]byte, n)
	for i := range items {
		items[i] = bytes.Repeat([]byte{byte(i)}, size)
	}
	return items
}

// Issue 11: a Map of items that travel encoded holds about one chunk's
// encoding per worker at a time, not every chunk's. 64 MiB of items go
// through a pool of two workers: the encoded bytes the pool held unsent
// must stay under two chunks per worker.
func TestPoolMapEncodesChunksAsWorkersTakeThem(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 60*time.Second)
	const n, size = 1024, 64 << 10
	items := bigItems(n, size)
	got, err := firstByte.Map(ctx, pool, items, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i%256 {
			t.Fatalf("item %d gave %d", i, v)
		}
	}
	held, peak, sends := mp.PoolArgBytes(pool)
	t.Logf("%d chunks encoded as sent; at most %d bytes held unsent, %d now", sends, peak, held)
	if limit := int64(2 * pool.Processes() * mp.MapChunkBytes); peak > limit {
		t.Errorf("the pool held up to %d bytes of encoded chunks unsent, more than %d (the items are %d bytes)", peak, limit, n*size)
	}
	if held != 0 {
		t.Errorf("%d bytes of encoded chunks still held after the Map", held)
	}
}

// Issue 11: Map's default chunks follow Python's rule (a quarter of each
// worker's share of the items) and hold no more than about MapChunkBytes
// of encoded items: Progress sees each chunk as it is done.
func TestPoolMapDefaultChunksCappedByBytes(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 60*time.Second)
	const n, size = 2400, 16 << 10 // Python's rule: 300 items, 4.7 MiB a chunk
	var mu sync.Mutex
	var chunks []int
	last := 0
	progress := mp.WithProgress(func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		chunks = append(chunks, done-last)
		last = done
	})
	if _, err := firstByte.Map(ctx, pool, bigItems(n, size), 0, progress); err != nil {
		t.Fatal(err)
	}
	// Map reports the last chunk before it returns.
	if most := slices.Max(chunks); most*size > mp.MapChunkBytes || most < mp.MapChunkBytes/(size+16) {
		t.Errorf("chunks of %v items of %d bytes; want about %d bytes each", chunks, size, mp.MapChunkBytes)
	}
	// Small items: Python's rule alone.
	chunks, last = nil, 0
	if _, err := firstByte.Map(ctx, pool, bigItems(800, 16), 0, progress); err != nil {
		t.Fatal(err)
	}
	if slices.Max(chunks) != 100 {
		t.Errorf("chunks of %v items of 16 bytes; want 100 each, as Python's", chunks)
	}
}

// A chunk whose items cannot be encoded fails the Map when the chunk is
// sent, with the codec's error; the chunks sent before it ran, and the
// pool serves on. With a task timeout each chunk goes alone, and the
// worker's turn is given back.
func TestPoolMapChunkThatCannotBeEncoded(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Minute} {
		pool := newPool(t, mp.PoolOptions{Processes: 1, TaskTimeout: timeout})
		ctx := ctxTimeout(t, 60*time.Second)
		// Quick tasks first, so that the worker is given many at once,
		// and a chunk after the one that fails goes in the same write.
		for range 10 {
			if _, err := double.Map(ctx, pool, []int{1, 2, 3, 4}, 1); err != nil {
				t.Fatal(err)
			}
		}
		items := make([]any, 40)
		for i := range items {
			items[i] = i
		}
		items[20] = func() {}
		_, err := anyOne.Map(ctx, pool, items, 1)
		if err == nil || !strings.Contains(err.Error(), "func") {
			t.Fatalf("timeout %v: Map of a func = %v, want the codec's error", timeout, err)
		}
		got, err := anyOne.Map(ctx, pool, []any{1, "two"}, 1)
		if err != nil || !slices.Equal(got, []int{1, 1}) {
			t.Fatalf("timeout %v: the next Map gave %v, %v", timeout, got, err)
		}
		if _, _, sends := mp.PoolArgBytes(pool); sends < 20 {
			t.Errorf("timeout %v: %d chunks encoded as sent, want 20 at least", timeout, sends)
		}
	}
}

// Issue 11 keeps issue 10's rule for chunks encoded as they are sent: a
// worker killed while it runs one chunk and holds others fails only the
// running one; the others go back to the queue, are encoded again and run
// elsewhere, once.
func TestPoolMapChunksOfDeadWorkerEncodedAgain(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 60*time.Second)
	const n = 200
	tr := newTracker(t, n+1)
	for range 30 { // quick tasks, so that the worker is given many at once
		if _, err := double.Map(ctx, pool, []int{1, 2, 3, 4}, 1); err != nil {
			t.Fatal(err)
		}
	}
	stopper := trackedTask.ApplyAsync(context.Background(), pool, trackJob{Tracker: tr.mem.Name(), N: n, Stop: true}, nil, nil)
	waitFor(t, func() bool { return tr.starts(n) == 1 && procState(tr.pid(n)) == 'T' })
	pid := tr.pid(n)
	_, _, before := mp.PoolArgBytes(pool)
	jobs := make([]trackJob, n)
	for i := range jobs {
		jobs[i] = trackJob{Tracker: tr.mem.Name(), N: i}
	}
	var got []int
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		got, err = trackedTask.Map(ctx, pool, jobs, 1)
	}()
	// Chunks are sent to the stopped worker, which holds them unstarted.
	waitFor(t, func() bool { _, _, s := mp.PoolArgBytes(pool); return s-before >= 10 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := stopper.Get(ctx); !errors.Is(err, mp.ErrWorkerLost) {
		t.Errorf("the running task: %v, want ErrWorkerLost", err)
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got[i] != i || tr.starts(i) != 1 || tr.pid(i) == pid {
			t.Errorf("item %d: result %d, started %d times, in pid %d (the dead worker's %d)", i, got[i], tr.starts(i), tr.pid(i), pid)
		}
	}
	if _, _, s := mp.PoolArgBytes(pool); s-before <= n {
		t.Errorf("%d chunks encoded for %d: the dead worker's were not encoded again", s-before, n)
	}
}

// encodeGate encodes as its N; the item N == gateAt waits in its encoding
// until gateOpen is closed, after closing gateIn. gateCalls counts the
// encodings.
type encodeGate struct{ N int }

var (
	gateAt    = -1
	gateIn    chan struct{}
	gateOpen  chan struct{}
	gateCalls atomic.Int64
)

func (g encodeGate) MarshalCBOR() ([]byte, error) {
	gateCalls.Add(1)
	if g.N == gateAt {
		close(gateIn)
		<-gateOpen
	}
	return mp.EncodeForTest(g.N)
}

func (g *encodeGate) UnmarshalCBOR(b []byte) error { return cbor.Unmarshal(b, &g.N) }

var encodeGateN = mp.Register("test.encodeGateN", func(g encodeGate) (int, error) { return g.N, nil })

// A Map whose ctx ends while one of its chunks is being encoded returns
// only once that encoding is over, and no chunk is encoded from its items
// after it has returned: the items are the caller's again.
func TestPoolMapReturnsOnlyWhenItsItemsAreLeft(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	items := make([]encodeGate, 50)
	for i := range items {
		items[i].N = i
	}
	gateAt, gateIn, gateOpen = 10, make(chan struct{}), make(chan struct{})
	open := sync.OnceFunc(func() { close(gateOpen) })
	t.Cleanup(func() { open(); gateAt = -1 }) // before the pool's: a failed test does not hang
	ctx, cancel := context.WithCancel(ctxTimeout(t, 60*time.Second))
	returned := make(chan error, 1)
	go func() {
		_, err := encodeGateN.Map(ctx, pool, items, 1)
		returned <- err
	}()
	<-gateIn // the dispatcher encodes item 10
	cancel()
	select {
	case err := <-returned:
		t.Fatalf("Map returned (%v) while its items were being encoded", err)
	case <-time.After(100 * time.Millisecond):
	}
	open()
	if err := <-returned; !errors.Is(err, context.Canceled) {
		t.Fatalf("Map = %v, want context.Canceled", err)
	}
	calls := gateCalls.Load()
	// The pool serves on, and no more of the items are encoded.
	if got, err := double.Map(ctxTimeout(t, 60*time.Second), pool, []int{1, 2}, 1); err != nil || !slices.Equal(got, []int{2, 4}) {
		t.Fatalf("the next Map gave %v, %v", got, err)
	}
	if n := gateCalls.Load(); n != calls {
		t.Errorf("%d items encoded after Map returned", n-calls)
	}
}

var strFirst = mp.Register("test.strFirst", func(s string) (int, error) { return int(s[0]), nil })

// MapAsync leaves items to the caller as soon as it returns: strings are
// copied with the slice and encoded as workers take them, byte slices
// (whose bytes may change) encoded at once.
func TestPoolMapAsyncItemsFreeOnReturn(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 60*time.Second)
	const n = 300
	strs := make([]string, n)
	blobs := bigItems(n, 10)
	for i := range strs {
		strs[i] = string(rune('a' + i%26))
	}
	_, _, before := mp.PoolArgBytes(pool)
	rs := strFirst.MapAsync(ctx, pool, strs, 1)
	rb := firstByte.MapAsync(ctx, pool, blobs, 1)
	for i := range n {
		strs[i] = "#"
		blobs[i][0] = '#'
	}
	gotS, err := rs.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gotB, err := rb.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if gotS[i] != 'a'+i%26 || gotB[i] != i%256 {
			t.Fatalf("item %d gave %d and %d, want %d and %d", i, gotS[i], gotB[i], 'a'+i%26, i%256)
		}
	}
	if _, _, s := mp.PoolArgBytes(pool); s-before != n {
		t.Errorf("%d chunks encoded as sent, want the %d of strings", s-before, n)
	}
}

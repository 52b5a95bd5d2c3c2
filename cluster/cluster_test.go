//go:build linux

package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/natsnode"
)

var double = mp.Register("cluster.test.double", func(x int) (int, error) { return 2 * x, nil })

// A submit-only pool's Map runs on a remote worker process: every result
// in input order.
func TestMapRemote(t *testing.T) {
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	startWorker(t, c, "2")
	awaitWorkers(t, c, 1)
	ctx := testCtx(t, 60*time.Second)
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	out, err := double.Map(ctx, pool, items, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != 2*i {
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	v, err := double.Apply(ctx, pool, 21)
	if err != nil || v != 42 {
		t.Fatalf("Apply: %v, %v", v, err)
	}
}

// A pool with local workers runs its tasks through the cluster in this
// process, with no remote worker.
func TestLocalWorkers(t *testing.T) {
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	ctx := testCtx(t, 60*time.Second)
	out, err := double.Map(ctx, pool, []int{1, 2, 3}, 1)
	if err != nil || len(out) != 3 || out[2] != 6 {
		t.Fatalf("Map: %v, %v", out, err)
	}
}

// An Executor on a cluster, and Imap: results in input order, each once.
func TestExecutorAndImap(t *testing.T) {
	c := startCluster(t, Options{})
	ex, err := mp.NewExecutor(mp.PoolOptions{Cluster: c, Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, c, "1")
	ctx := testCtx(t, 60*time.Second)
	futs := make([]*mp.Future[int], 20)
	for i := range futs {
		futs[i] = double.Submit(ctx, ex, i)
	}
	for i, f := range futs {
		if v, err := f.Result(ctx); err != nil || v != 2*i {
			t.Fatalf("future %d: %v, %v", i, v, err)
		}
	}
	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		t.Fatal(err)
	}
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	seq := func(yield func(int) bool) {
		for i := range 100 {
			if !yield(i) {
				return
			}
		}
	}
	i := 0
	for v, err := range double.Imap(ctx, pool, seq, 3) {
		if err != nil || v != 2*i {
			t.Fatalf("Imap item %d: %v, %v", i, v, err)
		}
		i++
	}
	if i != 100 {
		t.Fatalf("Imap gave %d items", i)
	}
	n := 0
	for _, err := range double.ImapUnordered(ctx, pool, seq, 7) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 100 {
		t.Fatalf("ImapUnordered gave %d items", n)
	}
}

// Bad options are refused with an error, before anything starts.
func TestBadOptions(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	if _, err := Start(ctx, Options{Pool: "a.b"}); err == nil {
		t.Error("pool name with a dot accepted")
	}
	if _, err := Start(ctx, Options{URL: "nats://127.0.0.1:1", SyncAlways: true}); err == nil {
		t.Error("SyncAlways with URL accepted")
	}
	if err := RunWorker(ctx, WorkerOptions{URL: "nats://127.0.0.1:1", Pool: "a>"}); err == nil {
		t.Error("worker pool name with > accepted")
	}
	c := startCluster(t, Options{})
	if _, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: -2}); err == nil {
		t.Error("Processes -2 accepted")
	}
}

var big = mp.Register("cluster.test.big", func(n int) ([]byte, error) { return make([]byte, n), nil })

// An argument or a result larger than the server takes fails its task
// with an error that says so, without a hang.
func TestTooLarge(t *testing.T) {
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	ctx := testCtx(t, 60*time.Second)
	limit := int(c.conn.nc.MaxPayload())
	var re *mp.RemoteError
	if _, err := big.Apply(ctx, pool, limit+10); !errors.Is(err, ErrTooLarge) || !errors.As(err, &re) || !strings.Contains(err.Error(), "max payload") {
		t.Errorf("result too large: got %v, want an *mp.RemoteError matching ErrTooLarge", err)
	}
	if _, err := byteLen.Apply(ctx, pool, make([]byte, limit)); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "max payload") {
		t.Errorf("argument too large: got %v", err)
	}
	// Chunks of a size given are cut to fit too (see TestMapChunksFitMaxPayload).
	if out, err := double.Map(ctx, pool, make([]int, limit/2), limit/2); err != nil || len(out) != limit/2 {
		t.Errorf("Map of chunks larger than a message: %v", err)
	}
	if v, err := big.Apply(ctx, pool, 10); err != nil || len(v) != 10 {
		t.Errorf("after: %v, %v", len(v), err)
	}
}

// The streams are work queues in file storage, and a pool's consumers
// have the options' settings.
func TestStreamsAndConsumers(t *testing.T) {
	c := startCluster(t, Options{AckWait: 7 * time.Second, MaxAttempts: 5, MaxAckPending: 123})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	ctx := testCtx(t, 30*time.Second)
	for _, name := range []string{taskStream, resultStream} {
		st, err := c.conn.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.WorkQueuePolicy || cfg.Replicas != 1 {
			t.Errorf("%s: %+v", name, cfg)
		}
	}
	cons, err := c.conn.js.Consumer(ctx, taskStream, taskDurable("default", clusterhook.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.AckWait != 7*time.Second || cfg.MaxDeliver != 6 || cfg.MaxAckPending != 123 || cfg.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("tasks' consumer: %+v", cfg)
	}
}

// SyncAlways reaches the embedded server, and StoreDir is where it keeps
// its files.
func TestSyncAlwaysAndStoreDir(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, Options{SyncAlways: true, StoreDir: dir})
	jsc := c.node.Server().JetStreamConfig()
	if jsc == nil || !jsc.SyncAlways || !strings.HasPrefix(jsc.StoreDir, dir) {
		t.Fatalf("JetStream config %+v", jsc)
	}
	c2 := startCluster(t, Options{})
	if jsc := c2.node.Server().JetStreamConfig(); jsc == nil || jsc.SyncAlways {
		t.Fatalf("default JetStream config %+v", jsc)
	}
}

// A cluster by URL, on a server that wants a token: refused without it;
// with it, a pool and a remote worker (given the authkey the token comes
// from, as MP_AUTHKEY) run a Map.
func TestExternalURLWithToken(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	key := "cluster test key"
	node, err := natsnode.Start(ctx, natsnode.Options{Token: natsnode.TokenFromAuthkey([]byte(key))})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	if c, err := Start(ctx, Options{URL: node.URL()}); err == nil {
		c.Close()
		t.Fatal("connected without the token")
	}
	c, err := Start(ctx, Options{URL: node.URL(), Token: natsnode.TokenFromAuthkey([]byte(key))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	startWorker(t, c, "1", "MP_AUTHKEY="+key)
	out, err := double.Map(ctx, pool, []int{1, 2, 3}, 1)
	if err != nil || len(out) != 3 || out[2] != 6 {
		t.Fatalf("Map: %v, %v", out, err)
	}
}

// Closing the cluster terminates the pools open on it: their tasks fail
// with ErrPoolTerminated; a pool opened after fails with ErrClosed.
func TestCloseTerminatesPools(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	res := double.ApplyAsync(ctx, pool, 1, nil, nil) // no worker takes it
	c.Close()
	if _, err := res.Get(ctx); !errors.Is(err, mp.ErrPoolTerminated) {
		t.Errorf("got %v, want ErrPoolTerminated", err)
	}
	pool.Close()
	if err := pool.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewPool on a closed cluster: %v", err)
	}
}

// MP_AUTHKEY in hexadecimal ("hex:..."), as `mp cluster serve` and mp
// manager read it: the worker derives its token from the key's bytes, so
// it meets a server given the same key.
func TestWorkerHexAuthkey(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	key := []byte{0x00, 0xff, 0x10, 0x80, 0x7f} // not text: only its hex form can be given
	node, err := natsnode.Start(ctx, natsnode.Options{Token: natsnode.TokenFromAuthkey(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	c, err := Start(ctx, Options{URL: node.URL(), Token: natsnode.TokenFromAuthkey(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	startWorker(t, c, "1", "MP_AUTHKEY=hex:"+hex.EncodeToString(key))
	out, err := double.Map(ctx, pool, []int{1, 2, 3}, 1)
	if err != nil || len(out) != 3 || out[2] != 6 {
		t.Fatalf("Map: %v, %v", out, err)
	}
}

// A worker whose URL carries a token sends no token of its own, even
// with MP_AUTHKEY set (even to a key that does not parse); without one
// in the URL, the token comes from the key's bytes.
func TestWorkerOptionsFromEnv(t *testing.T) {
	t.Setenv(EnvCluster, "nats://127.0.0.1:4222, nats://secret@127.0.0.1:4223")
	t.Setenv("MP_AUTHKEY", "hex:zz")
	o, err := workerOptionsFromEnv()
	if err != nil || o.Token != "" {
		t.Errorf("URL with a token: Token %q, err %v; want none", o.Token, err)
	}
	t.Setenv(EnvCluster, "nats://127.0.0.1:4222")
	t.Setenv("MP_AUTHKEY", "hex:00ff")
	o, err = workerOptionsFromEnv()
	if want := natsnode.TokenFromAuthkey([]byte{0, 0xff}); err != nil || o.Token != want {
		t.Errorf("hex key: Token %q, err %v; want %q", o.Token, err, want)
	}
	t.Setenv("MP_AUTHKEY", "hex:zz")
	if _, err := workerOptionsFromEnv(); err == nil {
		t.Error("a bad hex key is accepted")
	}
}

var byteLen = mp.Register("cluster.test.len", func(b []byte) (int, error) { return len(b), nil })

// bigItemsPool starts a cluster whose messages hold 1 MiB (the
// default), and a pool with 2 local workers on it, closed as the test
// ends; it makes n items of 300 KiB and a few bytes (item i: i more):
// 4 of them are more than a message holds.
func bigItemsPool(t *testing.T, n int) (*Cluster, *mp.Pool, [][]byte) {
	t.Helper()
	c := startCluster(t, Options{})
	if mpl := c.conn.nc.MaxPayload(); mpl > 1<<20 {
		t.Fatalf("the embedded server's max payload is %d: the test expects 1 MiB", mpl)
	}
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(t, pool) })
	items := make([][]byte, n)
	for i := range items {
		items[i] = make([]byte, 300<<10+i)
	}
	return c, pool, items
}

// A Map on a cluster cuts its chunks to what the server's messages hold
// (1 MiB by default, where a local pool's chunks reach 4 MiB): items of
// 300 KiB, 12 MiB in all, and 2 Mi fixed-size items (16 MiB, sent from
// their memory locally) all arrive; an item alone larger than a message
// fails with ErrTooLarge, and so does such an Apply.
func TestMapChunksFitMaxPayload(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	c, pool, items := bigItemsPool(t, 40)
	lens, err := byteLen.Map(ctx, pool, items, 0)
	if err != nil {
		t.Fatalf("Map of 300 KiB items: %v", err)
	}
	for i, l := range lens {
		if l != len(items[i]) {
			t.Fatalf("item %d: length %d, want %d", i, l, len(items[i]))
		}
	}
	ints := make([]int, 2<<20)
	for i := range ints {
		ints[i] = i
	}
	out, err := double.Map(ctx, pool, ints, 0)
	if err != nil {
		t.Fatalf("Map of 2 Mi ints: %v", err)
	}
	for i, v := range out {
		if v != 2*i {
			t.Fatalf("item %d: %d", i, v)
		}
	}
	huge := [][]byte{{1}, make([]byte, 2<<20), {2}}
	if _, err := byteLen.Map(ctx, pool, huge, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Map with an item of 2 MiB: %v, want ErrTooLarge", err)
	}
	var tl *TooLargeError
	if _, err := byteLen.Apply(ctx, pool, make([]byte, 2<<20)); !errors.As(err, &tl) || tl.Limit != c.conn.nc.MaxPayload() {
		t.Errorf("Apply of 2 MiB: %v, want a *TooLargeError", err)
	}
}

var intsLen = mp.Register("cluster.test.intslen", func(v []int) (int, error) { return len(v), nil })

// Chunks larger than the server's messages (1 MiB), from Imap,
// ImapUnordered, an Executor's SubmitMap, or a Map whose chunks were
// sized from an estimate that missed, are cut in parts that fit: every
// result comes back once, in order. Items of 300 KiB in chunks of 8, raw
// ints in chunks of 1.6 MB, and a Map of []int whose sampled items are
// small and the others 270 KB each. An item alone larger than a message
// fails with ErrTooLarge, alone (chunksize 1: the others succeed) or with
// the items of its chunk (as any failing item fails its chunk's).
func TestImapChunksFitMaxPayload(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	c, pool, items := bigItemsPool(t, 40)
	i := 0
	for l, err := range byteLen.Imap(ctx, pool, slices.Values(items), 8) {
		if err != nil || l != len(items[i]) {
			t.Fatalf("Imap item %d: %d, %v; want %d", i, l, err, len(items[i]))
		}
		i++
	}
	if i != len(items) {
		t.Fatalf("Imap gave %d results of %d", i, len(items))
	}
	seen := map[int]int{}
	for l, err := range byteLen.ImapUnordered(ctx, pool, slices.Values(items), 8) {
		if err != nil {
			t.Fatalf("ImapUnordered: %v", err)
		}
		seen[l]++
	}
	for i, b := range items {
		if seen[len(b)] != 1 {
			t.Fatalf("ImapUnordered gave item %d %d times", i, seen[len(b)])
		}
	}
	ints := make([]int, 300_000)
	for i := range ints {
		ints[i] = i
	}
	i = 0
	for v, err := range double.Imap(ctx, pool, slices.Values(ints), 200_000) {
		if err != nil || v != 2*i {
			t.Fatalf("Imap of ints, item %d: %d, %v", i, v, err)
		}
		i++
	}
	if i != len(ints) {
		t.Fatalf("Imap of ints gave %d results", i)
	}
	// Map's estimate comes from 16 items spread over the slice: these are
	// small, the others not, so its chunks of 8 hold 6 items of 270 KB.
	lists := make([][]int, 64)
	for i := range lists {
		n := 30_000
		if i%4 == 0 {
			n = 1
		}
		lists[i] = slices.Repeat([]int{1 << 40}, n)
	}
	lens, err := intsLen.Map(ctx, pool, lists, 0)
	if err != nil {
		t.Fatalf("Map of []int: %v", err)
	}
	for i, l := range lens {
		if l != len(lists[i]) {
			t.Fatalf("Map of []int, item %d: %d", i, l)
		}
	}
	huge := slices.Clone(items[:9])
	huge[4] = make([]byte, 2<<20)
	for _, chunksize := range []int{1, 3} {
		i = 0
		for l, err := range byteLen.Imap(ctx, pool, slices.Values(huge), chunksize) {
			if i/chunksize == 4/chunksize {
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("chunksize %d, item %d (in the chunk of the item of 2 MiB): %d, %v; want ErrTooLarge", chunksize, i, l, err)
				}
			} else if err != nil || l != len(huge[i]) {
				t.Errorf("chunksize %d, item %d: %d, %v; want %d", chunksize, i, l, err, len(huge[i]))
			}
			i++
		}
		if i != len(huge) {
			t.Errorf("chunksize %d: %d results of %d", chunksize, i, len(huge))
		}
	}
	pool.Close()
	ex, err := mp.NewExecutor(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Shutdown(context.Background(), mp.ShutdownOptions{})
	i = 0
	for l, err := range byteLen.SubmitMap(ctx, ex, items, 8) {
		if err != nil || l != len(items[i]) {
			t.Fatalf("SubmitMap item %d: %d, %v", i, l, err)
		}
		i++
	}
	if i != len(items) {
		t.Fatalf("SubmitMap gave %d results", i)
	}
}

// ReadStatus finds the pool's queue (its name and build) and its local
// workers' heartbeats, as `mp cluster status` prints them.
func TestReadStatus(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	if _, err := double.Apply(ctx, pool, 1); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(ctx, StatusOptions{URL: c.URL(), Listen: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fp := clusterhook.Fingerprint()
	if len(st.Pools) != 1 || st.Pools[0].Pool != "default" || st.Pools[0].Build != fp || st.Pools[0].Queued != 0 {
		t.Errorf("pools %+v, want default of build %s", st.Pools, fp)
	}
	if len(st.Workers) != 1 || st.Workers[0].Build != fp || st.Workers[0].Slots != 2 || st.Workers[0].Pool != "default" {
		t.Errorf("workers %+v, want one of 2 slots", st.Workers)
	}
	if len(st.Streams) != 2 || st.Version == "" {
		t.Errorf("streams %d, version %q", len(st.Streams), st.Version)
	}
}

// Pool.Stats of a pool on a cluster is empty, local workers included, as
// the package doc says; Processes counts the local workers' slots.
func TestStatsOnCluster(t *testing.T) {
	c := startCluster(t, Options{})
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, pool)
	if _, err := double.Apply(testCtx(t, 30*time.Second), pool, 1); err != nil {
		t.Fatal(err)
	}
	if st := pool.Stats(); len(st) != 0 {
		t.Errorf("Stats: %+v, want none", st)
	}
	if n := pool.Processes(); n < 2 {
		t.Errorf("Processes: %d, want the 2 local slots at least", n)
	}
}

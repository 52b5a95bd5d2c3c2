//go:build linux

package cluster

import (
	"testing"
	"time"

	"github.com/go-mp/mp"
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

//go:build linux

package cluster_test

import (
	"context"
	"fmt"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/cluster"
)

var square = mp.Register("cluster.example.square", func(x int) (int, error) { return x * x, nil })

// A pool on an embedded JetStream server. Its two local workers take the
// tasks from the stream, as remote workers started with
// MP_CLUSTER=<c.URL()> ./prog would.
func ExampleStart() {
	ctx := context.Background()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Join(ctx)
	defer pool.Close()
	out, err := square.Map(ctx, pool, []int{1, 2, 3, 4}, 0)
	fmt.Println(out, err)
	// Output: [1 4 9 16] <nil>
}

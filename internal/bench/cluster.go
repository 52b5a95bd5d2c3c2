//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/cluster"
)

// The cluster workloads have py_cluster_baseline.py's shape (Dask
// distributed): a server (here the embedded JetStream), 2 worker processes
// of one task at a time, the submitting pool in this process, all on
// 127.0.0.1.

var slow2ms = mp.Register("bench.slow2ms", func(x int) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return x, nil
})

func init() {
	add(Workload{Name: "cluster_map", Doc: "Map(x*2) over 20k items on 2 remote cluster workers", Run: benchClusterMap})
	add(Workload{Name: "cluster_apply_sync", Doc: "Apply on a cluster, one at a time (median)", Run: benchClusterApply})
	add(Workload{Name: "cluster_kill", Doc: "3000 tasks of 2 ms, one of 2 cluster workers SIGKILLed at a third", Run: benchClusterKill})
}

// clusterSetup is an embedded cluster, a submit-only pool on it and 2
// worker processes (this program re-executed with MP_CLUSTER).
type clusterSetup struct {
	c       *cluster.Cluster
	pool    *mp.Pool
	workers []*exec.Cmd
	exited  []chan struct{}
}

func startClusterSetup(o cluster.Options) (*clusterSetup, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	s := &clusterSetup{c: c}
	s.pool, err = mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		c.Close()
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		s.stop()
		return nil, err
	}
	for range 2 {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), cluster.EnvCluster+"="+c.URL(), cluster.EnvProcesses+"=1")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			s.stop()
			return nil, err
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		s.workers, s.exited = append(s.workers, cmd), append(s.exited, done)
	}
	// The pool counts the workers it hears from.
	for s.pool.Processes() < 2 {
		if ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("cluster workers not up in a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, nil
}

func (s *clusterSetup) stop() {
	if s.pool != nil {
		s.pool.Terminate()
		s.pool.Join(context.Background())
	}
	for i, w := range s.workers {
		w.Process.Signal(os.Interrupt)
		select {
		case <-s.exited[i]:
		case <-time.After(10 * time.Second):
			w.Process.Kill()
			<-s.exited[i]
		}
	}
	s.c.Close()
}

func benchClusterMap(scale float64) ([]Result, error) {
	n := scaled(20000, scale)
	s, err := startClusterSetup(cluster.Options{})
	if err != nil {
		return nil, err
	}
	defer s.stop()
	ctx := context.Background()
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	if _, err := double.Map(ctx, s.pool, items[:200], 0); err != nil {
		return nil, err
	}
	t := time.Now()
	out, err := double.Map(ctx, s.pool, items, 0)
	if err != nil {
		return nil, err
	}
	dt := time.Since(t)
	for i, v := range out {
		if v != 2*i {
			return nil, fmt.Errorf("cluster_map: out[%d] = %d", i, v)
		}
	}
	return []Result{{"cluster_map", dt.Seconds() / float64(n) * 1e6, "us/task"}}, nil
}

func benchClusterApply(scale float64) ([]Result, error) {
	n := scaled(300, scale)
	s, err := startClusterSetup(cluster.Options{})
	if err != nil {
		return nil, err
	}
	defer s.stop()
	ctx := context.Background()
	if _, err := double.Apply(ctx, s.pool, 1); err != nil {
		return nil, err
	}
	times := make([]time.Duration, n)
	for i := range times {
		t := time.Now()
		v, err := double.Apply(ctx, s.pool, i)
		if err != nil {
			return nil, err
		}
		times[i] = time.Since(t)
		if v != 2*i {
			return nil, fmt.Errorf("cluster_apply_sync: got %d for %d", v, i)
		}
	}
	slices.Sort(times)
	return []Result{{"cluster_apply_sync", float64(times[n/2].Nanoseconds()) / 1e3, "us/task"}}, nil
}

// benchClusterKill reports the fraction of tasks whose result came, each
// once (an AsyncResult resolves once), after one worker was SIGKILLed,
// with the seconds until all were in. The ack wait (2 s) bounds how long
// the killed worker's task waits before another worker takes it.
func benchClusterKill(scale float64) ([]Result, error) {
	n := scaled(3000, scale)
	s, err := startClusterSetup(cluster.Options{AckWait: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var done atomic.Int64
	third := make(chan struct{})
	t := time.Now()
	rs := make([]*mp.AsyncResult[int], n)
	for i := range rs {
		rs[i] = slow2ms.ApplyAsync(ctx, s.pool, i, func(int) {
			if done.Add(1) == int64(n/3) {
				close(third)
			}
		}, nil)
	}
	select {
	case <-third:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.workers[0].Process.Kill()
	got := 0
	for i, r := range rs {
		v, err := r.Get(ctx)
		if err != nil {
			return nil, fmt.Errorf("cluster_kill: task %d: %w", i, err)
		}
		if v == i {
			got++
		}
	}
	dt := time.Since(t)
	return []Result{{"cluster_kill", float64(got) / float64(n), fmt.Sprintf("fraction in %.2fs", dt.Seconds())}}, nil
}

//go:build linux

package cluster

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain runs the children the tests start: the pool's local workers,
// and remote cluster workers (the test binary re-executed with
// MP_CLUSTER, which mp.Main turns into a worker). The leak check covers
// the embedded NATS server's goroutines and the workers' processes.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// envOtherBuild makes the test binary register one more target, as a
// program built from other code would: its fingerprint differs.
const envOtherBuild = "MPTEST_CLUSTER_OTHER_BUILD"

func init() {
	if os.Getenv(envOtherBuild) != "" {
		mp.Register("cluster.test.extra", func(x string) (string, error) { return x, nil })
	}
}

// startCluster starts an embedded cluster that the test closes.
func startCluster(t *testing.T, o Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// remoteWorker is a worker process: the test binary re-executed with
// MP_CLUSTER.
type remoteWorker struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startWorker starts a remote worker of c with procs local processes;
// env adds to its environment. The test stops it (SIGTERM, then SIGKILL)
// and reaps it.
func startWorker(t *testing.T, c *Cluster, procs string, env ...string) *remoteWorker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), EnvCluster+"="+c.URL(), EnvProcesses+"="+procs, EnvPool+"="+c.opts.Pool)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &remoteWorker{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// awaitWorkers waits until n workers of this build have sent their
// heartbeat to c, or fails the test.
func awaitWorkers(t *testing.T, c *Cluster, n int) {
	t.Helper()
	seen := map[string]bool{}
	ch := make(chan *nats.Msg, 64)
	sub, err := c.conn.nc.ChanSubscribe(hbPrefix+c.opts.Pool+"."+clusterhook.Fingerprint(), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case m := <-ch:
			var h heartbeat
			if h.parse(m.Data) == nil {
				seen[h.ID] = true
			}
		case <-deadline:
			t.Fatalf("%d of %d workers seen in 30 s", len(seen), n)
		}
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// closePool closes pool and waits for it, bounded.
func closePool(t *testing.T, pool *mp.Pool) {
	t.Helper()
	pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pool.Join(ctx); err != nil {
		t.Errorf("Join: %v", err)
	}
}

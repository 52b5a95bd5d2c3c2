//go:build linux

// Package natstest runs JetStream clusters for tests: each node a process
// of its own (the test binary re-executed, which Main turns into a node),
// on loopback, routed to the others, so that a test can SIGKILL or
// SIGSTOP one as a machine would die or hang. A package that uses it
// calls Main first thing in its TestMain.
package natstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/freeport"
	"github.com/go-mp/mp/internal/natsnode"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// nodeEnv carries a node's options (JSON) to the re-executed test binary.
const nodeEnv = "MP_NATSTEST_NODE"

// nodeSpec is what a node process is told.
type nodeSpec struct {
	Name, StoreDir, Token string
	ClusterPort           int
	Routes                []string
}

// Main runs this process as a node if it was started as one (and then
// exits); otherwise it returns at once. The node stops when its parent
// closes its standard input (or dies) or on SIGTERM.
func Main() {
	s := os.Getenv(nodeEnv)
	if s == "" {
		return
	}
	var spec nodeSpec
	if err := json.Unmarshal([]byte(s), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "natstest node:", err)
		os.Exit(2)
	}
	os.Exit(serveNode(spec))
}

func serveNode(spec nodeSpec) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	start, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := natsnode.Start(start, natsnode.Options{
		Name: spec.Name, StoreDir: spec.StoreDir, Token: spec.Token,
		ClusterName: "natstest", ClusterPort: spec.ClusterPort, Routes: spec.Routes,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natstest node:", err)
		return 1
	}
	defer n.Shutdown()
	fmt.Printf("ready %s\n", n.URL())
	// The lifeline: standard input ends when the parent closes it or
	// dies, so that no node outlives its test.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
	return 0
}

// A Cluster is a JetStream cluster of node processes on loopback.
type Cluster struct {
	Nodes []*Node
	// Token is what clients present (nats.Token); routes use it too.
	Token string
}

// A Node is one process of a Cluster.
type Node struct {
	Name string
	// URL is where clients connect, nats://127.0.0.1:PORT.
	URL string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed once the process is reaped
}

// StartCluster starts size nodes and waits, as long as ctx allows, until
// their JetStream has a meta leader; the test's cleanup kills them all
// and removes their stores.
func StartCluster(ctx context.Context, t testing.TB, size int) *Cluster {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var key [16]byte
	rand.Read(key[:])
	c := &Cluster{Token: natsnode.TokenFromAuthkey(key[:])}
	// Routes are known to all before any starts: JetStream wants them at
	// start. The ports were free a moment ago (and lie below the range
	// the kernel gives connections, see freeport.Ports); should one have been
	// taken since, its node fails to start: the cluster starts again on
	// other ports, a few times.
	stores := t.TempDir()
	for attempt := 1; ; attempt++ {
		ports := freeport.Ports(t, size)
		if h := testHookClusterPorts; h != nil {
			h(attempt, ports)
		}
		nodes, err := startNodes(ctx, exe, c.Token, filepath.Join(stores, fmt.Sprint("try", attempt)), ports)
		if err == nil {
			c.Nodes = nodes
			break
		}
		for _, n := range nodes {
			n.stop()
		}
		if attempt == 3 || ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again on other ports: %v", err)
	}
	for _, n := range c.Nodes {
		t.Cleanup(n.stop)
	}
	nc := c.Connect(t, nil)
	defer nc.Close()
	if err := waitMetaLeader(ctx, nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// testHookClusterPorts, if a test sets it, is given the ports of each
// attempt of StartCluster before its nodes start.
var testHookClusterPorts func(attempt int, ports []int)

// startNodes starts a node on each of ports, as one cluster, with their
// stores under dir; it returns those it started, also on error.
func startNodes(ctx context.Context, exe, token, dir string, ports []int) ([]*Node, error) {
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprint("127.0.0.1:", p))
	}
	var nodes []*Node
	for i, p := range ports {
		spec := nodeSpec{
			Name: fmt.Sprint("n", i), StoreDir: filepath.Join(dir, fmt.Sprint("n", i)),
			Token: token, ClusterPort: p, Routes: routes,
		}
		n, err := startNode(ctx, exe, spec)
		if n != nil {
			nodes = append(nodes, n)
		}
		if err != nil {
			return nodes, fmt.Errorf("node %s: %w", spec.Name, err)
		}
	}
	return nodes, nil
}

// startNode starts a node process and waits for its "ready URL" line.
func startNode(ctx context.Context, exe string, spec nodeSpec) (*Node, error) {
	b, _ := json.Marshal(spec)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &Node{Name: spec.Name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- u
			}
		}
		cmd.Wait()
		close(n.done)
	}()
	select {
	case n.URL = <-ready:
		return n, nil
	case <-n.done:
		return n, fmt.Errorf("exited before it was ready: %v", cmd.ProcessState)
	case <-ctx.Done():
		return n, ctx.Err()
	}
}

// stop ends the node for good and waits for the process: SIGKILL,
// after SIGCONT should it be stopped (a stopped process dies of SIGKILL
// too, but says so only once continued on some kernels).
func (n *Node) stop() {
	n.stdin.Close()
	n.cmd.Process.Signal(syscall.SIGCONT)
	n.cmd.Process.Kill()
	<-n.done
}

// Kill SIGKILLs the node, as a machine that dies, and waits until the
// process is gone.
func (n *Node) Kill() {
	n.cmd.Process.Kill()
	<-n.done
}

// Stop SIGSTOPs the node, as a machine that hangs: its connections stay
// open and silent.
func (n *Node) Stop() error {
	return n.cmd.Process.Signal(syscall.SIGSTOP)
}

// Cont SIGCONTs a stopped node.
func (n *Node) Cont() error {
	return n.cmd.Process.Signal(syscall.SIGCONT)
}

// Node returns the node named name, nil if none is.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// URLs returns the nodes' client URLs, comma-separated, first's first
// (any order when first is nil).
func (c *Cluster) URLs(first *Node) string {
	var us []string
	if first != nil {
		us = append(us, first.URL)
	}
	for _, n := range c.Nodes {
		if n != first {
			us = append(us, n.URL)
		}
	}
	return strings.Join(us, ",")
}

// TokenURLs is URLs with the token in each (nats://TOKEN@host:port), as
// programs given only a URL (MP_CLUSTER, cluster.Options.URL) need it.
func (c *Cluster) TokenURLs(first *Node) string {
	return strings.ReplaceAll(c.URLs(first), "nats://", "nats://"+c.Token+"@")
}

// ClientOptions are the options a client of a cluster needs to ride out
// a node's death or hang (the measured pitfalls): a ping every
// second with 2 missed (the default, 2 minutes, leaves a hung server
// unnoticed), reconnecting for ever, quickly, to the nodes in the given
// order first.
func (c *Cluster) ClientOptions() []nats.Option {
	return []nats.Option{
		nats.Token(c.Token),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond),
		nats.DontRandomize(), nats.Timeout(2 * time.Second),
	}
}

// Connect connects a client with ClientOptions, to first if it is
// running; the test's cleanup closes it.
func (c *Cluster) Connect(t testing.TB, first *Node, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(first), append(c.ClientOptions(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitMetaLeader waits until the cluster's JetStream answers requests.
func waitMetaLeader(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(rctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no JetStream meta leader: %v (%w)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StreamLeader returns the node leading the stream's Raft group, waiting
// (as long as ctx allows) until there is one.
func (c *Cluster) StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (*Node, error) {
	return c.leader(ctx, func(ctx context.Context) (*jetstream.ClusterInfo, error) {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		return s.CachedInfo().Cluster, nil
	})
}

// ConsumerLeader returns the node leading the consumer's Raft group,
// waiting (as long as ctx allows) until there is one.
func (c *Cluster) ConsumerLeader(ctx context.Context, js jetstream.JetStream, stream, consumer string) (*Node, error) {
	return c.leader(ctx, func(ctx context.Context) (*jetstream.ClusterInfo, error) {
		cons, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			return nil, err
		}
		return cons.CachedInfo().Cluster, nil
	})
}

func (c *Cluster) leader(ctx context.Context, info func(context.Context) (*jetstream.ClusterInfo, error)) (*Node, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		ci, err := info(rctx)
		cancel()
		if err == nil && ci != nil && ci.Leader != "" {
			if n := c.Node(ci.Leader); n != nil {
				return n, nil
			}
			err = fmt.Errorf("leader %q is not a node of the cluster", ci.Leader)
		}
		if err == nil {
			err = errors.New("no leader yet")
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("finding the leader: %v (%w)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

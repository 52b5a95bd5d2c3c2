//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/cluster"
	"github.com/go-mp/mp/internal/freeport"
	"github.com/go-mp/mp/internal/natsnode"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startClusterServe starts `mp cluster serve` with args and returns it
// with its client URL (and its cluster URL, "" if it has none).
func startClusterServe(t *testing.T, ctx context.Context, bin string, env []string, args ...string) (cmd *exec.Cmd, url, clusterURL string) {
	t.Helper()
	cmd, url, clusterURL, err := tryClusterServe(t, ctx, bin, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, url, clusterURL
}

// tryClusterServe is startClusterServe, returning an error when serve
// failed to start.
func tryClusterServe(t *testing.T, ctx context.Context, bin string, env []string, args ...string) (cmd *exec.Cmd, url, clusterURL string, err error) {
	t.Helper()
	cmd, lines, err := tryPrinting(t, ctx, bin, env, func(l string) bool { return strings.HasPrefix(l, "store ") },
		append([]string{"cluster", "serve"}, args...)...)
	if err != nil {
		return nil, "", "", err
	}
	for _, l := range lines {
		if u, ok := strings.CutPrefix(l, "serving on "); ok {
			url = u
		}
		if u, ok := strings.CutPrefix(l, "cluster on "); ok {
			clusterURL = u
		}
	}
	if url == "" {
		t.Fatalf("serve printed %q", lines)
	}
	return cmd, url, clusterURL, nil
}

// clusterCmd runs `mp cluster ARGS` with env and returns its output.
func clusterCmd(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"cluster"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stopServe sends SIGTERM and checks that serve exits 0.
func stopServe(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

// TestClusterServe runs `mp cluster serve` with an authkey: a program
// presenting the derived token (as `mp cluster token` prints it) uses its
// JetStream; status with the key shows the stream and its consumer's
// pending messages, without it or with another key it is refused. On
// SIGTERM serve exits 0 and removes its temporary store.
func TestClusterServe(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key := "00112233445566778899aabbccddeeff"
	tmp := t.TempDir()
	env := []string{"MP_AUTHKEY=hex:" + key, "TMPDIR=" + tmp}
	serve, url, curl := startClusterServe(t, ctx, bin, env, "-listen", "127.0.0.1:0")
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || curl != "" {
		t.Fatalf("serving on %q, cluster on %q", url, curl)
	}
	out, err := clusterCmd(ctx, bin, env, "token")
	raw, _ := hex.DecodeString(key)
	if err != nil || out != natsnode.TokenFromAuthkey(raw)+"\n" {
		t.Fatalf("mp cluster token: %v %q", err, out)
	}
	nc, err := nats.Connect(url, nats.Token(strings.TrimSpace(out)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TASKS", Subjects: []string{"tasks.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "tasks.x", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	out, err = clusterCmd(ctx, bin, env, "status", "-url", url)
	if err != nil || !strings.Contains(out, "stream TASKS subjects tasks.> storage file replicas 1 messages 3") ||
		!strings.Contains(out, "  consumer workers filter all pending 3 ack-pending 0 redelivered 0 waiting 0") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	t.Logf("status:\n%s", out)
	// No key at all: unset here, and so in the children.
	t.Setenv("MP_AUTHKEY", "")
	os.Unsetenv("MP_AUTHKEY")
	for _, bad := range [][]string{{"MP_AUTHKEY=hex:ffff"}, nil} {
		out, err = clusterCmd(ctx, bin, bad, "status", "-url", url)
		if err == nil || !strings.Contains(out, "Authorization") {
			t.Errorf("status with %s: %v\n%s", bad, err, out)
		}
	}
	nc.Close()
	stopServe(t, serve)
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("serve left %v in its temporary directory", ents)
	}
}

// TestClusterServeThreeNodes starts three `mp cluster serve` routed to
// each other, as the README does: a stream with 3 replicas has a leader
// and two current replicas in status, and the store directories hold
// their files after SIGTERM.
func TestClusterServeThreeNodes(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var routes []string
	var stores string
	var serves []*exec.Cmd
	var urls []string
	// The route ports were free a moment ago: should one have been taken
	// since (by another test's program), its node fails to start, and the
	// cluster starts again on other ports. The first attempt has its last
	// port taken on purpose, so that this path is taken each time.
	for attempt := 1; ; attempt++ {
		routes, serves, urls = nil, nil, nil
		for _, p := range freeport.Ports(t, 3) {
			routes = append(routes, fmt.Sprint("127.0.0.1:", p))
		}
		if attempt == 1 {
			l, err := net.Listen("tcp", routes[2])
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
		}
		stores = t.TempDir()
		var err error
		for i, r := range routes {
			store := filepath.Join(stores, fmt.Sprint("n", i))
			var serve *exec.Cmd
			var url, curl string
			serve, url, curl, err = tryClusterServe(t, ctx, bin, nil, "-listen", "127.0.0.1:0", "-name", fmt.Sprint("n", i),
				"-store", store, "-cluster-listen", r, "-routes", strings.Join(routes, ","))
			if err != nil {
				break
			}
			if curl != "nats-route://"+r {
				t.Fatalf("cluster on %q, want nats-route://%s", curl, r)
			}
			serves, urls = append(serves, serve), append(urls, url)
		}
		if err == nil {
			if attempt == 1 {
				t.Fatal("the cluster started with a route port taken")
			}
			break
		}
		for _, s := range serves {
			s.Process.Kill()
			s.Wait()
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again on other ports: %v", err)
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// The nodes elect JetStream's meta leader first.
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.CreateStream(rctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3})
		rcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no stream with 3 replicas: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var out string
	for {
		// The replicas report current once they caught up.
		out, err = clusterCmd(ctx, bin, nil, "status", "-url", urls[1])
		if err == nil && strings.Contains(out, "replicas 3") && strings.Count(out, "(current)") == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "server n1 cluster mp version") || !strings.Contains(out, " leader n") {
		t.Errorf("status:\n%s", out)
	}
	t.Logf("status:\n%s", out)
	nc.Close()
	for _, s := range serves {
		stopServe(t, s)
	}
	for i := range routes {
		if _, err := os.Stat(filepath.Join(stores, fmt.Sprint("n", i), "jetstream")); err != nil {
			t.Errorf("node %d's store: %v", i, err)
		}
	}
}

// TestClusterServeTLS serves clients with TLS: status trusting the CA
// gets through, a plain one does not.
func TestClusterServeTLS(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	certs := certFiles(t, "mp cluster test CA")
	in := func(name string) string { return filepath.Join(certs, name) }
	serve, url, _ := startClusterServe(t, ctx, bin, nil, "-listen", "127.0.0.1:0", "-tls-cert", in("server.pem"), "-tls-key", in("server-key.pem"))
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("serving on %q with TLS", url)
	}
	if out, err := clusterCmd(ctx, bin, nil, "status", "-url", url, "-tls-ca", in("ca.pem")); err != nil || !strings.Contains(out, "server ") {
		t.Errorf("TLS status: %v\n%s", err, out)
	}
	plain := strings.Replace(url, "tls://", "nats://", 1)
	if out, err := clusterCmd(ctx, bin, nil, "status", "-url", plain, "-timeout", "5s"); err == nil {
		t.Errorf("plain status reached a TLS server:\n%s", out)
	} else {
		t.Logf("plain status: %s", out)
	}
	stopServe(t, serve)
}

// TestClusterServeRefusesOffLoopback asks serve to listen off loopback
// without authentication, for clients and for routes: it refuses.
func TestClusterServeRefusesOffLoopback(t *testing.T) {
	t.Setenv("MP_AUTHKEY", "")
	os.Unsetenv("MP_AUTHKEY")
	nkeys := filepath.Join(t.TempDir(), "nkeys")
	os.WriteFile(nkeys, []byte("UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n"), 0o600)
	for _, args := range [][]string{
		{"-listen", "0.0.0.0:0"},
		{"-listen", "[::]:0"},
		{"-nkeys", nkeys, "-cluster-listen", "0.0.0.0:0", "-routes", "127.0.0.1:1"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"cluster", "serve"}, args...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "needs authentication") {
			t.Errorf("mp cluster serve %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
}

// statusTriple is the target of TestClusterStatusPoolsAndWorkers.
var statusTriple = mp.Register("cmd.mp.test.triple", func(x int) (int, error) { return 3 * x, nil })

// TestClusterStatusPoolsAndWorkers runs a pool of package cluster with a
// remote worker (this test binary re-executed with MP_CLUSTER, 2 local
// processes): status shows the pool's tasks and the worker, with the
// same fingerprint.
func TestClusterStatusPoolsAndWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, err := mp.NewPool(mp.PoolOptions{Cluster: c, Processes: mp.NoLocalWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		pool.Close()
		pool.Join(ctx)
	}()
	worker := exec.Command(os.Args[0], "-test.run=^$")
	worker.Env = append(os.Environ(), cluster.EnvCluster+"="+c.URL(), cluster.EnvProcesses+"=2")
	worker.Stderr = os.Stderr
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		worker.Process.Signal(syscall.SIGTERM)
		worker.Wait()
	}()
	if out, err := statusTriple.Map(ctx, pool, []int{1, 2, 3}, 1); err != nil || out[2] != 9 {
		t.Fatalf("Map: %v %v", out, err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"cluster", "status", "-url", c.URL(), "-workers", "2500ms"}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, &errb)
	}
	t.Logf("status:\n%s", &out)
	var poolFP, workerFP string
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) == 13 && f[0] == "pool" && f[1] == "default" && strings.HasSuffix(l, "tasks queued 0 running 0 free slots asking "+f[12]) {
			poolFP = f[3]
		}
		if len(f) == 8 && f[0] == "worker" && f[2] == "pool" && f[3] == "default" && f[6] == "slots" && f[7] == "2" {
			workerFP = f[5]
		}
	}
	if poolFP == "" || poolFP != workerFP || !strings.Contains(out.String(), "workers heard within 2.5s: 1\n") {
		t.Fatalf("no pool default with a worker of the same build (%q, %q) in:\n%s", poolFP, workerFP, &out)
	}
}

//go:build linux

package natsnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/freeport"
	"github.com/go-mp/mp/internal/testcert"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noLeaks checks, after the test and all its cleanups, that no goroutine
// started during the test is left.
func noLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// start starts a node for a test, which shuts it down at its end.
func start(t *testing.T, o Options) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

// connect connects a client with a ping every 250 ms, so that a test
// notices a dead server at once.
func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.PingInterval(250 * time.Millisecond), nats.MaxPingsOutstanding(2), nats.Timeout(5 * time.Second)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// untilResponder calls f again, every 50 ms while ctx allows, as long as
// it fails for want of a responder (a stream or a meta leader being
// elected) or of the peers a stream is to be placed on (see noPeersYet).
func untilResponder(ctx context.Context, f func() error) error {
	for {
		err := f()
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) && !noPeersYet(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errCodeNoPeers is the JetStream API's error "no suitable peers for
// placement": the meta leader, just elected, has not heard from every
// peer yet, and a stream of 3 replicas has nowhere to go for a moment.
const errCodeNoPeers = 10005

// noPeersYet reports whether err is that error.
func noPeersYet(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeNoPeers
}

// roundTrip makes a file-backed work-queue stream with the given
// replicas, publishes count messages with acks and consumes them all with
// acks through a durable consumer.
func roundTrip(t *testing.T, nc *nats.Conn, replicas, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A cluster's stream, just made, has no leader for a moment: a
	// request meanwhile meets no responder, and is made again.
	var s jetstream.Stream
	err = untilResponder(ctx, func() (err error) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "T", Subjects: []string{"t.>"}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: replicas,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range count {
		if err := untilResponder(ctx, func() error {
			_, err := js.Publish(ctx, "t.x", []byte(fmt.Sprint(i)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var c jetstream.Consumer
	err = untilResponder(ctx, func() (err error) {
		c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, Replicas: replicas})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < count {
		// A fetch that meets no responder (the consumer's leader not
		// elected yet, or changing) is made again for what is left.
		err := untilResponder(ctx, func() error {
			b, err := c.Fetch(count-len(seen), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			for m := range b.Messages() {
				seen[string(m.Data())] = true
				if err := untilResponder(ctx, func() error { return m.DoubleAck(ctx) }); err != nil {
					return err
				}
			}
			return b.Error()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A replicated work queue removes acknowledged messages a little
	// after the ack: wait for it, within ctx.
	for {
		var info *jetstream.StreamInfo
		err := untilResponder(ctx, func() (err error) {
			info, err = s.Info(ctx)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d messages left in the work queue after every ack", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartJetStream starts a node with the zero Options, uses its
// JetStream through nats.go, and checks that Shutdown leaves no goroutine
// and removes the temporary store.
func TestStartJetStream(t *testing.T) {
	noLeaks(t)
	n, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(n.URL(), "nats://127.0.0.1:") || strings.HasSuffix(n.URL(), ":4222") {
		t.Errorf("URL %q: want nats://127.0.0.1 on a free port", n.URL())
	}
	if n.ClusterURL() != "" {
		t.Errorf("ClusterURL %q of a single node", n.ClusterURL())
	}
	if err := n.WaitJetStream(t.Context()); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, nc, 1, 100)
	nc.Close()
	store := n.tempDir
	if _, err := os.Stat(store + "/jetstream"); err != nil {
		t.Errorf("JetStream's files are not in the temporary store: %v", err)
	}
	n.Shutdown()
	n.Shutdown() // again: nothing
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary store %s is still there after Shutdown (%v)", store, err)
	}
}

// TestStoreDirKept checks that a store of the caller's survives Shutdown
// with its streams, and that a node restarted on it finds them.
func TestStoreDirKept(t *testing.T) {
	dir := t.TempDir()
	n := start(t, Options{StoreDir: dir, Name: "keep"})
	nc := connect(t, n.URL())
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "K", Subjects: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	n.Shutdown()
	n2 := start(t, Options{StoreDir: dir, Name: "keep"})
	nc2 := connect(t, n2.URL())
	js2, _ := jetstream.New(nc2)
	s, err := js2.Stream(ctx, "K")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("after a restart on the same store: %+v, %v; want the 1 message", info, err)
	}
}

// TestRefuseOffLoopback asks for listeners off loopback without
// authentication: Start refuses with ErrNoAuth and starts nothing.
func TestRefuseOffLoopback(t *testing.T) {
	noLeaks(t)
	for _, o := range []Options{
		{Host: "0.0.0.0"},
		{Host: "::"},
		{Host: "0.0.0.0", Nkeys: nil, Token: ""},
		// Nkeys cover clients, not routes.
		{Nkeys: []string{userPub(t)}, ClusterHost: "0.0.0.0", Routes: []string{"127.0.0.1:1"}},
		{ClusterName: "c", ClusterHost: "0.0.0.0"},
	} {
		n, err := Start(t.Context(), o)
		if !errors.Is(err, ErrNoAuth) {
			if n != nil {
				n.Shutdown()
			}
			t.Errorf("Start(%+v): %v, want ErrNoAuth", o, err)
		}
	}
	if !loopback("localhost") || loopback("0.0.0.0") || !loopback("::1") || !loopback("127.0.0.2") {
		t.Error("loopback misjudges an address")
	}
}

func userPub(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// TestTokenAuth checks that a node with a token refuses clients without
// it or with another, and serves the one that has it.
func TestTokenAuth(t *testing.T) {
	tok := TokenFromAuthkey([]byte("key"))
	n := start(t, Options{Token: tok})
	for _, opt := range []nats.Option{nats.Token("wrong"), func(*nats.Options) error { return nil }} {
		nc, err := nats.Connect(n.URL(), opt, nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
			t.Fatal("a client without the right token connected")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("bad token: %v, want nats.ErrAuthorization", err)
		}
	}
	roundTrip(t, connect(t, n.URL(), nats.Token(tok)), 1, 10)
	// The token in the URL, as MP_CLUSTER gives it.
	connect(t, strings.Replace(n.URL(), "nats://", "nats://"+tok+"@", 1)).Close()
}

// TestTokenFromAuthkey checks the derivation: the same key gives the same
// token, another key another, and the key does not appear in it.
func TestTokenFromAuthkey(t *testing.T) {
	a, b := TokenFromAuthkey([]byte("one key")), TokenFromAuthkey([]byte("other key"))
	if a != TokenFromAuthkey([]byte("one key")) || a == b || len(a) != 64 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if strings.Contains(a, fmt.Sprintf("%x", "one key")) {
		t.Fatal("the token shows the key")
	}
}

// TestNkeyAuth checks that a node given a user's public nkey serves a
// client signing with that user's seed and refuses another user.
func TestNkeyAuth(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()
	n := start(t, Options{Nkeys: []string{pub}})
	nc, err := nats.Connect(n.URL(), nats.Nkey(opub, other.Sign), nats.Timeout(5*time.Second))
	if err == nil {
		nc.Close()
		t.Fatal("a user whose nkey the node does not know connected")
	}
	roundTrip(t, connect(t, n.URL(), nats.Nkey(pub, kp.Sign)), 1, 10)
	if _, err := Start(t.Context(), Options{Nkeys: []string{"not-a-key"}}); err == nil {
		t.Fatal("a key that is not a user's public nkey was accepted")
	}
}

// TestTLS checks a node serving TLS: the URL says tls://, a client that
// trusts the CA gets through, one without TLS does not.
func TestTLS(t *testing.T) {
	ca := testcert.ForTest(t, "natsnode")
	n := start(t, Options{TLS: ca.ServerConfig(false)})
	if !strings.HasPrefix(n.URL(), "tls://") {
		t.Fatalf("URL %q of a TLS node", n.URL())
	}
	if nc, err := nats.Connect(strings.Replace(n.URL(), "tls://", "nats://", 1), nats.Timeout(3*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a plain client reached a TLS node")
	}
	roundTrip(t, connect(t, n.URL(), nats.Secure(ca.ClientConfig())), 1, 10)
}

// TestPortInUse starts a node on a port another node holds: Start fails
// with the server's error at once (not when ctx ends) and leaves nothing.
func TestPortInUse(t *testing.T) {
	noLeaks(t)
	n := start(t, Options{})
	port := n.srv.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	var p int
	fmt.Sscan(port, &p)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	n2, err := Start(ctx, Options{Port: p})
	if err == nil {
		n2.Shutdown()
		t.Fatal("a second node started on a port in use")
	}
	if ctx.Err() != nil {
		t.Fatalf("Start waited for ctx (%v) instead of reporting: %v", time.Since(begin), err)
	}
	t.Logf("port in use: %v (after %v)", err, time.Since(begin))
	n.Shutdown()
}

// TestLogger checks that the server's notices reach Options.Logger, and
// that at Info nothing at Debug is formatted.
func TestLogger(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := start(t, Options{Logger: l, Name: "logged"})
	n.Shutdown()
	mu.Lock()
	defer mu.Unlock()
	if s := buf.String(); !strings.Contains(s, "Server is ready") || !strings.Contains(s, "nats=logged") || strings.Contains(s, "level=DEBUG") {
		t.Fatalf("log:\n%s", s)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// TestCluster starts three nodes routed to each other on loopback, with a
// token: they elect a meta leader and serve a stream with 3 replicas.
func TestCluster(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	tok := TokenFromAuthkey([]byte("cluster"))
	// JetStream wants every node of a cluster to be given routes at
	// start: the ports are chosen first (each node lists itself too).
	ports := freeport.Ports(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprint("127.0.0.1:", p))
	}
	var nodes []*Node
	for i, p := range ports {
		n := start(t, Options{Name: fmt.Sprint("n", i), ClusterName: "t", ClusterPort: p, Routes: routes, Token: tok})
		if want := "nats-route://" + routes[i]; n.ClusterURL() != want {
			t.Fatalf("ClusterURL %q, want %q", n.ClusterURL(), want)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitJetStream(ctx); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip(t, connect(t, nodes[2].URL(), nats.Token(tok)), 3, 50)
	for _, n := range nodes {
		n.Shutdown()
	}
}

//go:build linux

// Package natsnode is the one home that starts a NATS server with
// JetStream inside this process (github.com/nats-io/nats-server/v2): the
// embedded server of package cluster, `mp cluster serve`, and the tests'
// clusters all start theirs here.
//
// A Node listens on loopback unless told otherwise, and refuses to listen
// anywhere else without authentication (ErrNoAuth). Its logs go to an
// slog.Logger, mp's (which discards) unless Options.Logger says otherwise.
// Shutdown returns only once the server's goroutines have ended and its
// temporary store, if it made one, is removed.
//
// # Durability
//
// JetStream keeps streams in files under the store directory. By
// default (nats-server's own default) the files are written at once but
// flushed to disk (fsync) every 2 minutes: a message that JetStream has
// acknowledged survives the server process being killed (the kernel has
// it), and, in a cluster of 3 with replicas 3, the loss of any one node;
// a power failure or kernel crash of the machine (of a majority of the
// cluster's machines) can lose what was acknowledged in the last 2
// minutes. Options.SyncAlways flushes every write before it is
// acknowledged, at a cost in speed.
package natsnode

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/mplog"
	"github.com/nats-io/nats-server/v2/server"
)

// Options configure a Node. The zero value is a single JetStream node on
// 127.0.0.1, on a free port, with a temporary store and no
// authentication.
type Options struct {
	// Host is the address clients connect to: 127.0.0.1 when empty. Any
	// address but loopback needs Token or Nkeys.
	Host string
	// Port is the client port; 0 picks a free one (URL tells which).
	Port int
	// StoreDir holds JetStream's files (in its subdirectory jetstream).
	// Empty: a temporary directory that Shutdown removes, so that nothing
	// outlives the Node.
	StoreDir string
	// Name is the server's name, which must be unique in a cluster and
	// stay the same across restarts on the same StoreDir. Empty: a
	// random one (for a single node with a temporary store, that is all
	// it needs).
	Name string

	// ClusterName, when set or when Routes is, makes the node a member
	// of a cluster of that name ("mp" when only Routes is set). Nodes of
	// one cluster share its JetStream: streams can have replicas.
	ClusterName string
	// ClusterHost is the address other nodes connect to: Host when
	// empty. Off loopback, it needs Token (routes authenticate with it).
	ClusterHost string
	// ClusterPort is the port other nodes connect to; 0 picks a free one
	// (ClusterURL tells which).
	ClusterPort int
	// Routes are the other nodes' cluster addresses, "host:port" or
	// "nats-route://host:port". A node may list itself (it skips
	// itself), so that every node of a cluster can be given one list.
	Routes []string

	// Token, when set, is the token every client must present (in the
	// URL as nats://TOKEN@host:port, or with nats.Token) and the
	// password routes between nodes present. TokenFromAuthkey makes one
	// from an mp authkey.
	Token string
	// Nkeys are the public keys (starting with "U") of the users allowed
	// to connect; a client signs the server's challenge with the seed
	// (nats.go's nats.Nkey or nats.NkeyOptionFromSeed). It excludes
	// Token for clients; routes still need Token off loopback.
	Nkeys []string
	// TLS, when set, makes clients connect with TLS (URL says tls://);
	// with ClientAuth tls.RequireAndVerifyClientCert, clients must
	// present a certificate.
	TLS *tls.Config
	// ClusterTLS, when set, makes routes between nodes use TLS. Each
	// node both accepts and dials routes, so the configuration needs a
	// certificate valid for both and the CA to verify the others.
	ClusterTLS *tls.Config

	// SyncAlways flushes JetStream's files to disk before each write is
	// acknowledged (see Durability in the package's doc); the default
	// flushes every 2 minutes.
	SyncAlways bool

	// Logger receives the server's logs: notices at Info, warnings at
	// Warn, errors at Error, debug and trace at Debug (only when the
	// logger is enabled for Debug). Nil: mp's logger (mp.SetLogger),
	// which discards by default.
	Logger *slog.Logger
}

// ErrNoAuth is the error of Start asked to listen off loopback without
// authentication: Token or Nkeys for clients, Token for routes.
var ErrNoAuth = errors.New("natsnode: listening off loopback needs authentication (a token or nkeys)")

// A Node is a running NATS server with JetStream.
type Node struct {
	srv     *server.Server
	name    string
	tempDir string // removed at Shutdown; "" when the store is the caller's
	tlsOn   bool
	cluster bool
	log     *logAdapter

	shutdownOnce sync.Once
}

// routeUser is the user name routes present, with Token as password.
const routeUser = "mp-route"

// Start starts a node and waits, as long as ctx allows, until it accepts
// connections (and, in a cluster, routes). A single node's JetStream is
// then ready; a cluster's needs its nodes to meet and elect a leader
// first (WaitJetStream). An error leaves nothing running.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ClusterHost == "" {
		o.ClusterHost = o.Host
	}
	clustered := o.ClusterName != "" || len(o.Routes) > 0
	if o.ClusterName == "" && clustered {
		o.ClusterName = "mp"
	}
	if o.Token != "" && len(o.Nkeys) > 0 {
		return nil, errors.New("natsnode: Token and Nkeys exclude each other for clients")
	}
	if o.Token == "" && len(o.Nkeys) == 0 && !loopback(o.Host) {
		return nil, fmt.Errorf("%w: clients on %s", ErrNoAuth, o.Host)
	}
	if clustered && o.Token == "" && !loopback(o.ClusterHost) {
		return nil, fmt.Errorf("%w: routes on %s", ErrNoAuth, o.ClusterHost)
	}
	if o.Name == "" {
		o.Name = "mp-" + randomHex()
	}
	n := &Node{name: o.Name, tlsOn: o.TLS != nil, cluster: clustered}
	if o.StoreDir == "" {
		d, err := os.MkdirTemp("", "mp-natsnode-")
		if err != nil {
			return nil, err
		}
		o.StoreDir, n.tempDir = d, d
	}
	so, err := serverOptions(o, clustered)
	if err != nil {
		n.removeTemp()
		return nil, err
	}
	srv, err := server.NewServer(so)
	if err != nil {
		n.removeTemp()
		return nil, fmt.Errorf("natsnode: %w", err)
	}
	n.srv = srv
	n.log = newLogAdapter(mplog.Or(o.Logger).With("nats", o.Name))
	debug := n.log.l.Enabled(context.Background(), slog.LevelDebug)
	srv.SetLoggerV2(n.log, debug, debug, false)
	srv.Start()
	if err := n.waitReady(ctx); err != nil {
		n.Shutdown()
		return nil, err
	}
	return n, nil
}

// serverOptions translates o, completed by Start, into the server's.
func serverOptions(o Options, clustered bool) (*server.Options, error) {
	so := &server.Options{
		ServerName: o.Name,
		Host:       o.Host,
		Port:       freeIfZero(o.Port),
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: o.SyncAlways,
		// Embedded: the process's signals are its owner's, and the logs
		// go through SetLoggerV2.
		NoSigs:        true,
		NoLog:         true,
		Authorization: o.Token,
		TLSConfig:     o.TLS,
	}
	if o.TLS != nil {
		so.TLS = true
		so.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		so.TLSTimeout = 2
	}
	for _, k := range o.Nkeys {
		if !strings.HasPrefix(k, "U") {
			return nil, fmt.Errorf("natsnode: nkey %q is not a user's public key (it starts with U)", k)
		}
		so.Nkeys = append(so.Nkeys, &server.NkeyUser{Nkey: k})
	}
	if !clustered {
		return so, nil
	}
	so.Cluster = server.ClusterOpts{
		Name:      o.ClusterName,
		Host:      o.ClusterHost,
		Port:      freeIfZero(o.ClusterPort),
		TLSConfig: o.ClusterTLS,
	}
	if o.ClusterTLS != nil {
		so.Cluster.TLSTimeout = 2
	}
	if o.Token != "" {
		so.Cluster.Username, so.Cluster.Password = routeUser, o.Token
	}
	for _, r := range o.Routes {
		u, err := routeURL(r, o.Token)
		if err != nil {
			return nil, err
		}
		so.Routes = append(so.Routes, u)
	}
	return so, nil
}

// freeIfZero maps our "0 = a free port" to the server's -1 (its 0 means
// the default port).
func freeIfZero(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

// routeURL parses a route, "host:port" or "nats-route://host:port", and
// gives it the route credentials when there is a token.
func routeURL(r, token string) (*url.URL, error) {
	s := r
	if !strings.Contains(s, "://") {
		s = "nats-route://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("natsnode: bad route %q: want host:port or nats-route://host:port", r)
	}
	if token != "" && u.User == nil {
		u.User = url.UserPassword(routeUser, token)
	}
	return u, nil
}

// loopback reports whether host is a loopback address, or a name that
// resolves only to loopback addresses. An unspecified address (0.0.0.0,
// ::) is every interface, not loopback.
func loopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// waitReady waits until the server listens, or its start failed, or ctx
// ends.
func (n *Node) waitReady(ctx context.Context) error {
	for {
		if err := n.log.fatal(); err != nil {
			return err
		}
		// ReadyForConnections polls every 25 ms up to its bound: a short
		// bound keeps ctx and a failed start noticed at once.
		if n.srv.ReadyForConnections(50 * time.Millisecond) {
			return n.log.fatal()
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("natsnode: waiting for the server to listen: %w", err)
		}
	}
}

// WaitJetStream waits, as long as ctx allows, until this node's JetStream
// can serve requests: at once for a single node; in a cluster, once the
// node follows an elected meta leader (its peers must be reachable).
func (n *Node) WaitJetStream(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !n.srv.JetStreamIsCurrent() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsnode: waiting for JetStream's meta leader: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// URL returns the address clients connect to, nats://host:port (tls://
// with TLS), with the port chosen. A node listening on every interface
// gives 127.0.0.1, which reaches it from this machine.
func (n *Node) URL() string {
	return n.url(n.srv.Addr(), "nats", "tls", n.tlsOn)
}

// ClusterURL returns the address other nodes route to,
// nats-route://host:port, "" when the node is not in a cluster.
func (n *Node) ClusterURL() string {
	if !n.cluster {
		return ""
	}
	a := n.srv.ClusterAddr()
	if a == nil {
		return ""
	}
	return n.url(a, "nats-route", "nats-route", false)
}

func (n *Node) url(a net.Addr, plain, secure string, tlsOn bool) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := ta.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	scheme := plain
	if tlsOn {
		scheme = secure
	}
	return scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// Name returns the server's name.
func (n *Node) Name() string { return n.name }

// Server returns the embedded server, for what this package does not
// wrap (tests look at leaders with it).
func (n *Node) Server() *server.Server { return n.srv }

// Shutdown stops the server: its clients and routes are disconnected,
// and, in a cluster, the Raft groups it leads step down first. It
// returns once the server's goroutines have ended, then removes the
// temporary store if Start made one. Calling it again does nothing.
func (n *Node) Shutdown() {
	n.shutdownOnce.Do(func() {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.removeTemp()
	})
}

func (n *Node) removeTemp() {
	if n.tempDir != "" {
		os.RemoveAll(n.tempDir)
	}
}

// tokenLabel separates the token from any other use of the authkey.
const tokenLabel = "mp cluster token v1"

// TokenFromAuthkey returns the NATS token derived from an mp authkey
// (HMAC-SHA256 of a fixed label, in hex): `mp cluster serve` and the
// programs given the same authkey (MP_AUTHKEY) meet with it, and the
// authkey itself never crosses the network.
func TokenFromAuthkey(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenLabel))
	return hex.EncodeToString(m.Sum(nil))
}

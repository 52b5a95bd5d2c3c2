//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp/cluster"
	"github.com/go-mp/mp/internal/natsnode"
)

// clusterCommands are the subcommands of `mp cluster`.
var clusterCommands = []string{"serve", "status", "token"}

// clusterSynopsis is each subcommand's usage line.
var clusterSynopsis = map[string]string{
	"serve":  "mp cluster serve [-listen host:port] [-store dir] [-name name]\n                 [-cluster-listen host:port -routes host:port,... [-cluster-name name]]\n                 [-authkey-file file | -nkeys file] [-tls-cert file -tls-key file [-tls-ca file]]",
	"status": "mp cluster status -url nats://host:port [-authkey-file file | -nkey-seed file] [TLS flags] [-timeout d] [-workers d]",
	"token":  "mp cluster token [-authkey-file file]",
}

const clusterUsage = `serve runs a NATS server with JetStream (embedded nats-server) until
interrupted: the engine that pools of package github.com/go-mp/mp/cluster
share across machines, for those who run no NATS of their own. It prints
"serving on nats://HOST:PORT" first, then "cluster on nats-route://HOST:PORT"
for a member of a cluster, then "store DIR"; the server's warnings and
errors go to stderr (with -v, its notices too). -store keeps JetStream's files
in that directory; without it they go to a temporary directory removed when
serve stops. Streams are files either way; the server flushes them to disk
every 2 minutes (a message it acknowledged survives serve being killed, and
with 3 replicas the loss of one node, but not a power failure of them all).

A cluster of 3 nodes, each with -cluster-listen (where the others reach it)
and -routes (every node's -cluster-listen, its own included), keeps streams
with 3 replicas that survive the loss of any one node. Give each node a
-name (by default mp-HOST-PORT of -listen): it must stay the same across
restarts on the same -store.

Authentication: with an authkey (-authkey-file, else the environment
variable MP_AUTHKEY, read as by mp manager), clients must present the token
derived from it (mp cluster token prints it; programs take it in the
URL, nats://TOKEN@host:port, as MP_CLUSTER or cluster.Options.URL), and
routes between nodes present it too. -nkeys
instead names a file of users' public nkeys (one a line, starting with U):
clients sign with their seed (status -nkey-seed). Without either, serve
listens on loopback only: -listen or -cluster-listen off loopback without
authentication is refused. The authkey never crosses the network; the
token does, in clear unless TLS is on.

TLS: serve -tls-cert and -tls-key (PEM files) serve clients with TLS, and
-tls-ca also requires client certificates signed by that CA; the URL is then
tls://HOST:PORT. Routes between nodes do not use these flags: they travel
in clear, authenticated with the token; across an untrusted network, route
nodes through a private network. status connects with TLS when given -tls,
-tls-ca or -tls-cert and -tls-key, as mp manager's clients do.

status prints the server it reached, then each stream (messages, consumers,
leader and replicas) and each of its consumers: pending (not yet delivered),
ack-pending (delivered, not acknowledged: tasks running), redelivered, and
waiting (pull requests waiting: workers ready for tasks). Then, for each
pool of package cluster (its name and the fingerprint of the program's
registered targets), the tasks queued and running and the free slots of
its workers asking for tasks; and the workers heard from within -workers (2s: they say they
are there every second), with their pool, fingerprint and slots.
`

// clusterHelp prints the usage of `mp cluster`: each subcommand with its
// flags, then what they share.
func clusterHelp(w io.Writer) {
	for _, cmd := range clusterCommands {
		newClusterFlags(cmd).usage(w)
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, clusterUsage)
}

// clusterFlags are the flags of one `mp cluster` subcommand.
type clusterFlags struct {
	cmd     string
	fs      *flag.FlagSet
	keyFile *string
	tls     *tlsFlags // serve, status
	// serve
	listen, store, name, clusterListen, routes, clusterName, nkeys *string
	verbose                                                        *bool
	// status
	url, nkeySeed *string
	timeout       *time.Duration
	workers       *time.Duration
}

// newClusterFlags returns the flags of subcommand cmd, nil if there is no
// such subcommand.
func newClusterFlags(cmd string) *clusterFlags {
	if _, ok := clusterSynopsis[cmd]; !ok {
		return nil
	}
	fs := flag.NewFlagSet("cluster "+cmd, flag.ContinueOnError)
	cf := &clusterFlags{
		cmd:     cmd,
		fs:      fs,
		keyFile: fs.String("authkey-file", "", "file holding the authkey (default: $MP_AUTHKEY)"),
	}
	switch cmd {
	case "serve":
		cf.listen = fs.String("listen", "127.0.0.1:4222", "address clients connect to (port 0: a free one)")
		cf.store = fs.String("store", "", "directory for JetStream's files (default: a temporary one, removed at exit)")
		cf.name = fs.String("name", "", "server name, unique in the cluster (default: mp-HOST-PORT of -listen)")
		cf.clusterListen = fs.String("cluster-listen", "", "address the other nodes of a cluster connect to (with -routes)")
		cf.routes = fs.String("routes", "", "comma-separated cluster addresses of every node (with -cluster-listen)")
		cf.clusterName = fs.String("cluster-name", "mp", "name of the cluster (the same on every node)")
		cf.nkeys = fs.String("nkeys", "", "file of the public nkeys of the users allowed, one a line (instead of an authkey)")
		cf.verbose = fs.Bool("v", false, "log the server's notices too, not only its warnings and errors")
		cf.tls = addTLSFlags(fs, true)
	case "status":
		cf.url = fs.String("url", "", "address of a node, nats://host:port (tls://host:port for TLS)")
		cf.nkeySeed = fs.String("nkey-seed", "", "file holding the user's nkey seed (instead of an authkey)")
		cf.timeout = fs.Duration("timeout", 10*time.Second, "give up after this long")
		cf.workers = fs.Duration("workers", 2*time.Second, "listen this long for workers' heartbeats (0: not at all)")
		cf.tls = addTLSFlags(fs, false)
	}
	return cf
}

// usage prints the subcommand's usage line and its flags.
func (cf *clusterFlags) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\nflags of mp cluster %s:\n", clusterSynopsis[cf.cmd], cf.cmd)
	printFlags(w, cf.fs)
}

// runCluster runs `mp cluster ...` and returns the exit status.
func runCluster(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		clusterHelp(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	if cmd == "help" || isHelpFlag(cmd) {
		return runHelp(append([]string{"cluster"}, args...), stdout, stderr)
	}
	cf := newClusterFlags(cmd)
	if cf == nil {
		fmt.Fprintf(stderr, "mp cluster: unknown command %q\n\n", cmd)
		clusterHelp(stderr)
		return 2
	}
	if status, ok := parseFlags(cf.fs, args, cf.usage, stdout, stderr); !ok {
		return status
	}
	if cf.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mp cluster %s: unexpected arguments %q\n", cmd, cf.fs.Args())
		return 2
	}
	key, err := readAuthkey(*cf.keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "mp cluster %s: %v\n", cmd, err)
		return 2
	}
	switch cmd {
	case "token":
		if key == nil {
			fmt.Fprintln(stderr, "mp cluster token: no authkey: give -authkey-file or set MP_AUTHKEY")
			return 2
		}
		fmt.Fprintln(stdout, natsnode.TokenFromAuthkey(key))
		return 0
	case "serve":
		o, err := cf.nodeOptions(key)
		if err != nil {
			fmt.Fprintf(stderr, "mp cluster serve: %v\n", err)
			return 2
		}
		level := slog.LevelWarn
		if *cf.verbose {
			level = slog.LevelInfo
		}
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := serveCluster(ctx, o, stdout); err != nil {
			fmt.Fprintf(stderr, "mp cluster serve: %v\n", err)
			return 1
		}
		return 0
	default: // status
		opts, err := cf.clientOptions(key)
		if err != nil {
			fmt.Fprintf(stderr, "mp cluster status: %v\n", err)
			return 2
		}
		ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
		defer cancel()
		if err := clusterStatus(ctx, *cf.url, opts, *cf.workers, stdout); err != nil {
			fmt.Fprintf(stderr, "mp cluster status: %v\n", err)
			return 1
		}
		return 0
	}
}

// nodeOptions turns serve's flags into the node's options.
func (cf *clusterFlags) nodeOptions(key []byte) (natsnode.Options, error) {
	var o natsnode.Options
	host, port, err := splitHostPort(*cf.listen, "-listen")
	if err != nil {
		return o, err
	}
	o.Host, o.Port, o.StoreDir, o.Name = host, port, *cf.store, *cf.name
	if o.Name == "" && port != 0 {
		// Stable across restarts on the same address, as a cluster's
		// member with a kept store needs.
		o.Name = "mp-" + strings.NewReplacer(":", "_", "[", "", "]", "").Replace(host) + "-" + strconv.Itoa(port)
	}
	if (*cf.clusterListen == "") != (*cf.routes == "") {
		return o, errors.New("-cluster-listen and -routes go together: every node of a cluster is given the routes to the others")
	}
	if *cf.routes != "" {
		if o.ClusterHost, o.ClusterPort, err = splitHostPort(*cf.clusterListen, "-cluster-listen"); err != nil {
			return o, err
		}
		o.ClusterName = *cf.clusterName
		for _, r := range strings.Split(*cf.routes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				o.Routes = append(o.Routes, r)
			}
		}
	}
	if key != nil && *cf.nkeys != "" {
		return o, errors.New("an authkey and -nkeys exclude each other")
	}
	if key != nil {
		o.Token = natsnode.TokenFromAuthkey(key)
	}
	if *cf.nkeys != "" {
		if o.Nkeys, err = readLines(*cf.nkeys); err != nil {
			return o, err
		}
		if len(o.Nkeys) == 0 {
			return o, fmt.Errorf("%s: no public nkey", *cf.nkeys)
		}
	}
	o.TLS, err = cf.tls.config()
	return o, err
}

// splitHostPort splits a flag's host:port; an empty host is refused, so
// that listening on every interface is always asked for by name (0.0.0.0).
func splitHostPort(addr, flagName string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		err = errors.New("no host (0.0.0.0 for every interface)")
	}
	var port int
	if err == nil {
		port, err = strconv.Atoi(p)
		if err == nil && (port < 0 || port > 65535) {
			err = errors.New("port out of range")
		}
	}
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %v", flagName, addr, err)
	}
	return host, port, nil
}

// readLines returns the file's lines that are not empty, trimmed.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// serveCluster runs a node until ctx ends (SIGINT or SIGTERM).
func serveCluster(ctx context.Context, o natsnode.Options, stdout io.Writer) error {
	n, err := natsnode.Start(ctx, o)
	if err != nil {
		return err
	}
	defer n.Shutdown()
	fmt.Fprintf(stdout, "serving on %s\n", n.URL())
	if u := n.ClusterURL(); u != "" {
		fmt.Fprintf(stdout, "cluster on %s\n", u)
	}
	store := o.StoreDir
	if store == "" {
		store = "temporary"
	}
	fmt.Fprintf(stdout, "store %s\n", store)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	<-ctx.Done()
	return nil
}

// clientOptions turns status's flags into the client's options.
func (cf *clusterFlags) clientOptions(key []byte) ([]nats.Option, error) {
	if *cf.url == "" {
		return nil, errors.New("-url is needed")
	}
	opts := []nats.Option{nats.Name("mp cluster status"), nats.NoReconnect()}
	if key != nil && *cf.nkeySeed != "" {
		return nil, errors.New("an authkey and -nkey-seed exclude each other")
	}
	if key != nil {
		opts = append(opts, nats.Token(natsnode.TokenFromAuthkey(key)))
	}
	if *cf.nkeySeed != "" {
		o, err := nats.NkeyOptionFromSeed(*cf.nkeySeed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	tlsConfig, err := cf.tls.config()
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		opts = append(opts, nats.Secure(tlsConfig))
	}
	return opts, nil
}

// clusterStatus prints what the node at url and its JetStream hold
// (cluster.ReadStatus), and the workers heard from within listen.
func clusterStatus(ctx context.Context, url string, opts []nats.Option, listen time.Duration, stdout io.Writer) error {
	st, err := cluster.ReadStatus(ctx, cluster.StatusOptions{URL: url, NATS: opts, Listen: listen})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "server %s", st.Server)
	if st.ClusterName != "" {
		fmt.Fprintf(stdout, " cluster %s", st.ClusterName)
	}
	fmt.Fprintf(stdout, " version %s\n", st.Version)
	for _, ss := range st.Streams {
		printStream(stdout, ss.Info)
		for _, ci := range ss.Consumers {
			printConsumer(stdout, ci)
		}
	}
	for _, p := range st.Pools {
		fmt.Fprintf(stdout, "pool %s build %s tasks queued %d running %d free slots asking %d\n",
			p.Pool, p.Build, p.Queued, p.Running, p.Asking)
	}
	if listen <= 0 {
		return nil
	}
	fmt.Fprintf(stdout, "workers heard within %v: %d\n", listen, len(st.Workers))
	for _, w := range st.Workers {
		fmt.Fprintf(stdout, "worker %s pool %s build %s slots %d\n", w.ID, w.Pool, w.Build, w.Slots)
	}
	return nil
}

// printStream prints a stream's line: its state and, in a cluster, its
// leader and replicas.
func printStream(w io.Writer, si *jetstream.StreamInfo) {
	fmt.Fprintf(w, "stream %s subjects %s storage %s replicas %d messages %d bytes %d consumers %d",
		si.Config.Name, strings.Join(si.Config.Subjects, ","), strings.ToLower(si.Config.Storage.String()), si.Config.Replicas,
		si.State.Msgs, si.State.Bytes, si.State.Consumers)
	printRaft(w, si.Cluster)
	fmt.Fprintln(w)
}

// printConsumer prints a consumer's line, indented under its stream.
func printConsumer(w io.Writer, ci *jetstream.ConsumerInfo) {
	filter := ci.Config.FilterSubject
	if len(ci.Config.FilterSubjects) > 0 {
		filter = strings.Join(ci.Config.FilterSubjects, ",")
	}
	if filter == "" {
		filter = "all"
	}
	fmt.Fprintf(w, "  consumer %s filter %s pending %d ack-pending %d redelivered %d waiting %d",
		ci.Name, filter, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
	printRaft(w, ci.Cluster)
	fmt.Fprintln(w)
}

// printRaft appends the leader and the replicas of a replicated stream
// or consumer: each replica with "current", "lag N" or "offline".
func printRaft(w io.Writer, c *jetstream.ClusterInfo) {
	if c == nil || (c.Leader == "" && len(c.Replicas) == 0) {
		return
	}
	leader := c.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(w, " leader %s", leader)
	for _, p := range c.Replicas {
		state := "current"
		switch {
		case p.Offline:
			state = "offline"
		case !p.Current:
			state = "lag " + strconv.FormatUint(p.Lag, 10)
		}
		fmt.Fprintf(w, " replica %s(%s)", p.Name, state)
	}
}

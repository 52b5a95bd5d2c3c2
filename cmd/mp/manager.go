//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/manager"
)

// managerCommands are the subcommands of `mp manager`.
var managerCommands = []string{"serve", "put", "get", "stats"}

// managerSynopsis is each subcommand's usage line.
var managerSynopsis = map[string]string{
	"serve": "mp manager serve [-addr host:port | -unix path] [-authkey-file file] [-handshake-timeout d] [-python]\n                 [-tls-cert file -tls-key file [-tls-ca file]]",
	"put":   "mp manager put [-addr host:port | -unix path] [-authkey-file file] [TLS flags] -queue name item...",
	"get":   "mp manager get [-addr host:port | -unix path] [-authkey-file file] [TLS flags] -queue name [-n count] [-timeout d]",
	"stats": "mp manager stats [-addr host:port | -unix path] [-authkey-file file] [TLS flags]",
}

const managerUsage = `serve runs a manager server of the SyncManager types (package
github.com/go-mp/mp/manager) until interrupted; programs use it with
manager.Connect, and meet at objects made with manager.Named. It prints
"serving on NETWORK ADDRESS" first. put and get put strings to and get them
from the named Queue (made if need be); stats prints what the server holds.

The authkey is read from -authkey-file, else from the environment variable
MP_AUTHKEY: text that starts with "hex:" is hexadecimal, any other is the
key byte for byte (a file's final line break is ignored). A server off
loopback must be given a key; on loopback or a unix socket, serve makes a
random one when none is given and prints it as "authkey hex:...".

serve -python also serves CPython's manager clients (3.11 to 3.13) on the
same address: SyncManager(address=(host, port), authkey=key).connect() in
Python, then m.dict(), m.Queue(), m.Lock()... share the server with Go
clients; a Python client reaches the object a Go client made with
manager.Named("jobs") through BaseManager.register("get_jobs").

serve drops a connection that has not authenticated within
-handshake-timeout (10s by default); connections that stay silent never
hold up the others, however many there are.

Without TLS, the authkey never crosses the network (only HMACs of random
challenges do) but everything after the handshake does, in clear: serve
with TLS when clients reach the server over a network. serve -tls-cert and
-tls-key (PEM files) serve TLS; -tls-ca also requires client certificates
signed by that CA. Clients connect with TLS when given -tls (verifying the
server with the system's CAs), -tls-ca (with that CA) or -tls-cert and
-tls-key (presenting a client certificate).

A key file that its group or others can read gets a warning on stderr.
`

// managerHelp prints the usage of `mp manager`: each subcommand with its
// flags, then what they share.
func managerHelp(w io.Writer) {
	for _, cmd := range managerCommands {
		newManagerFlags(cmd).usage(w)
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, managerUsage)
}

// managerFlags are the flags of one `mp manager` subcommand.
type managerFlags struct {
	cmd                       string
	fs                        *flag.FlagSet
	addr, unixPath, keyFile   *string
	tls                       *tlsFlags
	queue                     *string
	count                     *int
	timeout, handshakeTimeout *time.Duration
	python                    *bool
}

// newManagerFlags returns the flags of subcommand cmd, nil if there is no
// such subcommand.
func newManagerFlags(cmd string) *managerFlags {
	if _, ok := managerSynopsis[cmd]; !ok {
		return nil
	}
	fs := flag.NewFlagSet("manager "+cmd, flag.ContinueOnError)
	mf := &managerFlags{
		cmd:      cmd,
		fs:       fs,
		addr:     fs.String("addr", "", "TCP address host:port (serve: 127.0.0.1:0, a free port, by default)"),
		unixPath: fs.String("unix", "", "unix socket path, instead of -addr"),
		keyFile:  fs.String("authkey-file", "", "file holding the authkey (default: $MP_AUTHKEY)"),
		tls:      addTLSFlags(fs, cmd == "serve"),
	}
	switch cmd {
	case "serve":
		mf.handshakeTimeout = fs.Duration("handshake-timeout", connection.DefaultHandshakeTimeout, "drop a connection not authenticated within this long")
		mf.python = fs.Bool("python", false, "also serve CPython's manager clients (SyncManager(address=..., authkey=...).connect())")
	case "put", "get":
		mf.queue = fs.String("queue", "", "name of the queue")
		if cmd == "get" {
			mf.count = fs.Int("n", 1, "number of items to get")
			mf.timeout = fs.Duration("timeout", 0, "give up after this long (0: wait for ever)")
		}
	}
	return mf
}

// usage prints the subcommand's usage line and its flags.
func (mf *managerFlags) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\nflags of mp manager %s:\n", managerSynopsis[mf.cmd], mf.cmd)
	printFlags(w, mf.fs)
}

// runManager runs `mp manager ...` and returns the exit status.
func runManager(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		managerHelp(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	if cmd == "help" || isHelpFlag(cmd) {
		return runHelp(append([]string{"manager"}, args...), stdout, stderr)
	}
	mf := newManagerFlags(cmd)
	if mf == nil {
		fmt.Fprintf(stderr, "mp manager: unknown command %q\n\n", cmd)
		managerHelp(stderr)
		return 2
	}
	if status, ok := parseFlags(mf.fs, args, mf.usage, stdout, stderr); !ok {
		return status
	}
	fs, addr, unixPath, keyFile, tlsf := mf.fs, mf.addr, mf.unixPath, mf.keyFile, mf.tls
	queue, count, timeout, handshakeTimeout := mf.queue, mf.count, mf.timeout, mf.handshakeTimeout
	if *addr != "" && *unixPath != "" {
		fmt.Fprintln(stderr, "mp manager: -addr and -unix exclude each other")
		return 2
	}
	network, address := "tcp", *addr
	if *unixPath != "" {
		network, address = "unix", *unixPath
	}
	if cmd != "serve" && address == "" {
		fmt.Fprintf(stderr, "mp manager %s: -addr or -unix is needed\n", cmd)
		return 2
	}
	if queue != nil && *queue == "" {
		fmt.Fprintf(stderr, "mp manager %s: -queue is needed\n", cmd)
		return 2
	}
	tlsConfig, err := tlsf.config()
	if err != nil {
		fmt.Fprintf(stderr, "mp manager %s: %v\n", cmd, err)
		return 2
	}
	key, err := readAuthkey(*keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "mp manager:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "serve" {
		lc := connection.ListenConfig{HandshakeTimeout: *handshakeTimeout, TLS: tlsConfig}
		err = serveManager(ctx, lc, network, address, key, *mf.python, stdout)
	} else {
		if timeout != nil && *timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
		err = managerClient(ctx, cmd, network, address, key, tlsConfig, queue, count, fs.Args(), stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mp manager %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// readAuthkey reads the authkey from file, else from $MP_AUTHKEY; nil
// when neither gives one. mp manager and mp cluster take their keys here.
func readAuthkey(file string) ([]byte, error) {
	if file != "" {
		return manager.ReadAuthkeyFile(file)
	}
	return manager.AuthkeyFromEnv()
}

// serveManager serves until ctx ends (SIGINT or SIGTERM).
func serveManager(ctx context.Context, lc connection.ListenConfig, network, address string, key []byte, python bool, stdout io.Writer) error {
	// With no key, Listen uses this process's random key, and refuses a
	// TCP address off loopback.
	l, err := lc.Listen(network, address, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serving on %s %s\n", network, l.Addr())
	if key == nil {
		fmt.Fprintf(stdout, "authkey hex:%s\n", hex.EncodeToString(mp.CurrentProcess().Authkey))
	}
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	return (&manager.Server{Python: python}).Serve(ctx, l)
}

func managerClient(ctx context.Context, cmd, network, address string, key []byte, tlsConfig *tls.Config, queue *string, count *int, items []string, stdout io.Writer) error {
	var opts []manager.ConnectOption
	if tlsConfig != nil {
		opts = append(opts, manager.WithTLS(tlsConfig))
	}
	m, err := manager.Connect(ctx, network, address, key, opts...)
	if err != nil {
		return err
	}
	defer m.Close()
	if cmd == "stats" {
		st, err := m.Stats(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "objects %d\nclients %d\nwaiting %d\n", st.Objects, st.Clients, st.Waiting)
		return nil
	}
	q, err := manager.NewQueue[string](ctx, m, 0, manager.Named(*queue))
	if err != nil {
		return err
	}
	if cmd == "put" {
		for _, it := range items {
			if err := q.Put(ctx, it); err != nil {
				return err
			}
		}
		return nil
	}
	for range *count {
		it, err := q.Get(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("timed out waiting for an item")
			}
			return err
		}
		fmt.Fprintln(stdout, it)
	}
	return nil
}

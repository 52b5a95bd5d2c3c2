//go:build linux

package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mgrkv"
	"github.com/go-mp/mp/internal/mplog"
)

// Options configures the server that Start runs. The zero value (or a nil
// *Options) serves on a new abstract unix socket (Linux: no file, so
// nothing is left behind however the processes end), with the process
// tree's authkey.
type Options struct {
	// Network is "unix" (the default) or "tcp" ("tcp4", "tcp6").
	Network string
	// Address is where to listen: a socket path ("@name" for an abstract
	// socket), or "host:port". Empty means a new abstract unix socket, or
	// 127.0.0.1 on a free port.
	Address string
	// Authkey authenticates every connection. nil means
	// mp.CurrentProcess().Authkey, which the children of this process
	// inherit, so that proxies passed to them connect without further
	// ado. A TCP server off loopback needs an explicit key.
	Authkey []byte
	// Name is the name of the server process; empty means mp's default.
	Name string
	// HandshakeTimeout bounds the authentication of each incoming
	// connection; zero means connection.DefaultHandshakeTimeout. Silent
	// peers do not hold good clients up however long it is (see
	// connection.Listener); it only bounds how long each may keep a
	// descriptor of the server.
	HandshakeTimeout time.Duration
	// TLS, when not nil, makes the server run every connection inside
	// TLS with this server configuration, as a server reachable from
	// other machines should: without TLS the authkey never crosses the
	// wire, but every call and its reply do, in clear. Clients then
	// connect with Connect and WithTLS. The server is another process,
	// so only Certificates (with their private keys), MinVersion,
	// MaxVersion and CipherSuites are handed to it; a configuration that
	// needs more (client certificates, callbacks) is refused: serve it
	// with Serve and a connection.ListenConfig in this process. The
	// Manager that Start returns checks that the server presents one of
	// Certificates. Child processes that receive proxies of this server
	// must Connect to it WithTLS before using them.
	TLS *tls.Config
	// Logger, if set, is where the events of the server are reported,
	// instead of the logger set with mp.SetLogger in this process (at the
	// time of each event): a client process gone and what was given back
	// for it (see Server.Logger), a failed handshake (see
	// connection.ListenConfig.Logger). The server, another process, sends
	// its records here over a pipe; it drops them rather than wait if
	// this process does not take them as fast as they come.
	Logger *slog.Logger
	// Python makes the server serve CPython's manager clients too (see
	// Server.Python): from Python 3.11 to 3.13,
	// SyncManager(address=..., authkey=...).connect() then reaches the
	// same objects as Go clients. A unix address is given to Python as
	// the socket's path ("\0name" for an abstract "@name"), a TCP one as
	// (host, port).
	Python bool
}

// Manager is a connection to a manager server, as Python's SyncManager
// is: the objects it serves are made with NewDict, NewList, NewQueue,
// NewLock and the other New functions, or with a registered Type, and used
// through the proxies these return.
//
// A Manager may be used by many goroutines at once: each call takes a
// connection of its own from a pool (and a goroutine blocked in a Get or
// an Acquire keeps one), so no call waits for another's reply.
type Manager struct {
	c       *client
	kv      *kvStore // instead of c, for a replicated store (see kv.go)
	proc    *mp.Process
	logDone chan struct{} // closed when the server's records stop coming (see relayLog)

	mu       sync.Mutex
	shutdown bool
	err      error
}

// serveArgs are the server child's arguments.
type serveArgs struct {
	Network          string
	Address          string
	HandshakeTimeout time.Duration
	TLS              *serverTLS
	Python           bool
	Ready            *mp.Conn // the child reports its address, or why it failed
	Log              *mp.Conn // the child's log records go there (see relayLog)
}

type readyMsg struct {
	Address string
	Err     string
}

// serveTarget is the server child of Start. Being a daemon, it ends with
// its parent.
var serveTarget = mp.RegisterProc("mp.manager.serve", func(a serveArgs) error {
	logger, stopLog := logTo(a.Log)
	defer stopLog()
	tlsConfig, err := a.TLS.config()
	var l *connection.Listener
	if err == nil {
		l, err = connection.ListenConfig{HandshakeTimeout: a.HandshakeTimeout, TLS: tlsConfig, Logger: logger}.Listen(a.Network, a.Address, nil)
	}
	if err != nil {
		a.Ready.Send(readyMsg{Err: err.Error()})
		a.Ready.Close()
		return err
	}
	err = a.Ready.Send(readyMsg{Address: l.Addr().String()})
	a.Ready.Close()
	if err != nil {
		l.Close()
		return err
	}
	return (&Server{AllowShutdown: true, Logger: logger, Python: a.Python}).Serve(context.Background(), l)
})

// logBacklog is how many records the server holds for its parent before
// it drops new ones.
const logBacklog = 256

// logTo returns, in the server's process, a logger whose records go to c
// (or nowhere if c is nil), and a function that sends the records held
// and closes c. A record is dropped rather than waited for when
// logBacklog are held: the parent's logger may be slow, and no client
// waits for it.
func logTo(c *mp.Conn) (*slog.Logger, func()) {
	if c == nil {
		return mplog.Get(), func() {}
	}
	recs := make(chan *mplog.Wire, logBacklog)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for w := range recs {
			c.Send(w)
		}
	}()
	var mu sync.Mutex // makes stop and sends exclusive: no send on a closed channel
	closed := false
	send := func(w *mplog.Wire) error {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			select {
			case recs <- w:
			default: // dropped
			}
		}
		return nil
	}
	stop := func() {
		mu.Lock()
		closed = true
		close(recs)
		mu.Unlock()
		<-done
		c.Close()
	}
	return slog.New(mplog.NewRelayHandler(send)), stop
}

// relayLog hands the records that the server sends on c to o.Logger, or
// the logger of mp.SetLogger, until the server's end closes c; then it
// closes c and m.logDone.
func (m *Manager) relayLog(c *mp.Conn, o *Options) {
	defer close(m.logDone)
	defer c.Close()
	for {
		var w mplog.Wire
		if c.Recv(&w) != nil {
			return
		}
		mplog.Replay(mplog.Or(o.Logger), &w)
	}
}

// Start starts a manager server in a child process (a daemon: it ends
// when this process ends, however that happens) and connects to it, as
// Python's Manager() does. ctx bounds the start. Call Shutdown (or Close)
// when done.
func Start(ctx context.Context, opts *Options) (*Manager, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Network == "" {
		o.Network = "unix"
	}
	st, err := exportTLS(o.TLS)
	if err != nil {
		return nil, err
	}
	m := &Manager{}
	fail := func(err error) (*Manager, error) {
		if m.proc != nil {
			m.proc.Kill()
			m.proc.Join(context.Background())
			<-m.logDone
		}
		return nil, err
	}
	ready, childEnd, err := mp.Pipe(true)
	if err != nil {
		return fail(err)
	}
	defer ready.Close()
	logR, logW, err := mp.Pipe(false)
	if err != nil {
		childEnd.Close()
		return fail(err)
	}
	p := mp.NewProcess(serveTarget, serveArgs{Network: o.Network, Address: o.Address, HandshakeTimeout: o.HandshakeTimeout, TLS: st, Python: o.Python, Ready: childEnd, Log: logW})
	p.Daemon = true
	p.Authkey = o.Authkey
	if o.Name != "" {
		p.Name = o.Name
	}
	err = p.Start()
	childEnd.Close()
	logW.Close()
	if err != nil {
		logR.Close()
		return fail(fmt.Errorf("manager: start the server: %w", err))
	}
	m.proc = p
	m.logDone = make(chan struct{})
	go m.relayLog(logR, &o)
	var msg readyMsg
	stop := context.AfterFunc(ctx, func() { ready.Close() })
	err = ready.Recv(&msg)
	if !stop() {
		return fail(fmt.Errorf("manager: start the server: %w", ctx.Err()))
	}
	if err != nil {
		if jerr := p.Join(ctx); jerr != nil {
			err = jerr
		}
		return fail(fmt.Errorf("manager: the server did not start: %w", err))
	}
	if msg.Err != "" {
		return fail(fmt.Errorf("manager: the server did not start: %s", msg.Err))
	}
	m.c = newClient(o.Network, msg.Address, o.Authkey)
	if o.TLS != nil {
		m.c.tls = pinnedTLS(o.TLS)
	}
	cc, err := m.c.get(ctx)
	if err != nil {
		m.c.close()
		return fail(err)
	}
	m.c.put(cc)
	register(m.c)
	return m, nil
}

// Connect connects to a running manager server — one that another
// program started with Start, Serve or `mp manager serve` — at address on
// network ("unix" or "tcp"), with authkey (nil means
// mp.CurrentProcess().Authkey). As in Python's BaseManager.connect, the
// server is not this Manager's to stop: Shutdown and Close only
// disconnect.
//
// Connect also tells this process how to reach that manager: proxies of
// its objects that this process receives (as arguments, or inside values)
// use this Manager — its key, its TLS configuration and its connections —
// until it is closed. A child process that receives such proxies reaches
// a TLS server only once it has connected to it with Connect and WithTLS
// itself.
func Connect(ctx context.Context, network, address string, authkey []byte, opts ...ConnectOption) (*Manager, error) {
	if authkey != nil && len(authkey) == 0 {
		return nil, errors.New("manager: empty authkey")
	}
	if d := mgrkv.Lookup(network); d != nil {
		return openKV(ctx, d, network, address, authkey)
	}
	if network == "nats" {
		return nil, fmt.Errorf("%w: %q: import github.com/go-mp/mp/cluster, which registers it", ErrNoBackend, network)
	}
	var o connectOpts
	for _, f := range opts {
		f(&o)
	}
	m := &Manager{c: newClient(network, address, authkey)}
	m.c.tls = o.tls
	cc, err := m.c.get(ctx)
	if err != nil {
		m.c.close()
		return nil, err
	}
	m.c.put(cc)
	register(m.c)
	return m, nil
}

// A ConnectOption qualifies Connect.
type ConnectOption func(*connectOpts)

type connectOpts struct {
	tls *tls.Config
}

// WithTLS makes Connect reach the server inside TLS, with cfg as the
// client's configuration (RootCAs to verify a server whose certificate a
// private CA signed, Certificates to present a client certificate), as a
// server with TLS requires: see connection.Dialer. Without TLS the authkey
// never crosses the wire, but every call and its reply do, in clear.
func WithTLS(cfg *tls.Config) ConnectOption { return func(o *connectOpts) { o.tls = cfg } }

// Network returns the network of the server's address.
func (m *Manager) Network() string {
	if m.kv != nil {
		return m.kv.network
	}
	return m.c.network
}

// Address returns the server's address, as clients dial it.
func (m *Manager) Address() string {
	if m.kv != nil {
		return m.kv.address
	}
	return m.c.address
}

// Process returns the server process that Start started, or nil for a
// Manager made by Connect.
func (m *Manager) Process() *mp.Process { return m.proc }

// ServerPid returns the process id of the server (0 for a replicated
// store).
func (m *Manager) ServerPid() int {
	if m.kv != nil {
		return 0
	}
	return int(m.c.serverPid.Load())
}

// Shutdown stops the server that Start started and waits for its process
// to end, killing it if ctx ends first; then it closes the connections.
// For a Manager made by Connect it only closes the connections. Proxies
// fail afterwards, with mp.ErrClosed in this process (ErrManagerGone in
// others). Shutdown is idempotent; it returns nil once the server has
// ended, however it ended.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shutdown {
		return m.err
	}
	m.shutdown = true
	if m.kv != nil {
		m.err = m.kv.close()
		return m.err
	}
	if m.proc != nil {
		cc, err := m.c.get(ctx)
		if err == nil {
			cc.start(opShutdown, 0, 0)
			if cc.roundTrip(ctx) != nil {
				cc.broken = true
			}
			m.c.put(cc)
		}
		if m.proc.Join(ctx) != nil {
			select {
			case <-m.proc.Done():
			default:
				m.proc.Kill()
				<-m.proc.Done()
				if ctx.Err() != nil {
					m.err = fmt.Errorf("manager: the server did not stop in time and was killed: %w", ctx.Err())
				}
			}
		}
		<-m.logDone // the server is gone: its records end
		m.proc.Close()
	}
	unregister(m.c)
	m.c.close()
	return m.err
}

// DefaultShutdownTimeout bounds Close's wait for the server to stop.
const DefaultShutdownTimeout = 10 * time.Second

// Close is Shutdown with a timeout of DefaultShutdownTimeout, for defer.
func (m *Manager) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	return m.Shutdown(ctx)
}

// Stats describes what a manager server holds.
type Stats struct {
	Objects int // objects alive
	Clients int // client processes (sessions) connected
	Waiting int // operations waiting (an Acquire, a Get...)
}

// Stats asks the server what it holds; a replicated store has no server
// to ask (ErrUnknownMethod).
func (m *Manager) Stats(ctx context.Context) (Stats, error) {
	if m.kv != nil {
		return Stats{}, fmt.Errorf("%w: Stats of a replicated store", ErrUnknownMethod)
	}
	cc, err := m.c.get(ctx)
	if err != nil {
		return Stats{}, err
	}
	defer m.c.put(cc)
	cc.start(opPing, 0, 0)
	if err := cc.roundTrip(ctx); err != nil {
		return Stats{}, err
	}
	return Stats{Objects: cc.intItem(1), Clients: cc.intItem(2), Waiting: cc.intItem(3)}, nil
}

// An Option qualifies the making of an object.
type Option func(*createOpts)

type createOpts struct {
	name  string
	lease time.Duration // a Lock's, in a replicated store
}

// Named makes the object under a name, or gets the object already made
// under that name (it must be of the same kind; the other arguments of
// the New function are then ignored). Any number of programs can so meet
// at one object without passing proxies around: each asks for the name.
// A name keeps its object alive until the server ends.
func Named(name string) Option { return func(o *createOpts) { o.name = name } }

// create makes (or finds) an object of kind on m's server and returns its
// token.
func create(ctx context.Context, m *Manager, kind string, opts []Option, args ...any) (token, error) {
	var o createOpts
	for _, f := range opts {
		f(&o)
	}
	if m == nil || m.c == nil {
		return token{}, errors.New("manager: nil Manager")
	}
	cc, err := m.c.get(ctx)
	if err != nil {
		return token{}, err
	}
	cc.start(opCreate, 0, 2+len(args))
	cc.arg(kind)
	if o.name != "" {
		cc.arg(o.name)
	} else {
		cc.arg(nil)
	}
	for _, a := range args {
		if err := cc.arg(a); err != nil {
			m.c.put(cc)
			return token{}, err
		}
	}
	if err := cc.roundTrip(ctx); err != nil {
		m.c.put(cc)
		return token{}, err
	}
	id, _, err := codec.ReadUint(cc.item(1))
	m.c.put(cc)
	if err != nil {
		return token{}, errors.New("manager: malformed reply to create")
	}
	return token{Network: m.c.network, Address: m.c.address, Instance: m.c.instance.Load(), ID: id, Kind: kind}, nil
}

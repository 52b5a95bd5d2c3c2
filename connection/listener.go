//go:build linux

// Package connection is the Go counterpart of Python's
// multiprocessing.connection: a Listener that accepts authenticated
// connections and Dial (Python's Client) that makes them, both speaking
// CPython's wire protocol — its message framing and its authkey handshake —
// so Go and Python processes can talk to each other. The connections are
// [mp.Conn] values.
//
// It lives apart from package mp so that programs that only use pipes
// between their own processes do not link package net.
//
// # Security
//
// The authkey handshake keeps the key secret — only HMACs of random
// challenges cross the wire — and keeps out peers that do not know it. It
// does not hide or protect what follows: without TLS, every message
// travels in clear, readable and alterable by anyone on the network path.
// For a Listener reachable from other machines, set ListenConfig.TLS (and
// Dialer.TLS on the clients): the connection then runs inside TLS, the
// authkey handshake included. TLS is mp's extension of CPython's
// protocol: a TLS Listener first sends the frame "#STARTTLS#" in clear,
// so that a client without TLS (Go's, or CPython's, which has none) gets
// a prompt error instead of waiting, and a TLS client reaching a plain
// listener knows it at once.
package connection

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/auth"
	"github.com/go-mp/mp/internal/mplog"
)

// DefaultHandshakeTimeout bounds the authentication of each incoming
// connection when ListenConfig.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// maxHandshakes caps the handshakes a Listener runs at once, and so the
// descriptors that peers who do not know the key can hold. When it is
// reached, a new connection is not left waiting: the oldest handshake
// whose peer has not yet proved the key is dropped to make room (see
// ErrHandshakeEvicted). A good client proves the key within a round trip
// of connecting, so silent peers, however many, only ever evict each
// other, and the accept loop never stops accepting.
const maxHandshakes = 512

// ErrHandshakeEvicted is reported to ListenConfig.OnHandshakeError for a
// connection dropped during its handshake, before its peer proved the
// key, to make room for a newer one: maxHandshakes were in progress.
var ErrHandshakeEvicted = errors.New("mp: handshake dropped: too many connections in the handshake")

// Listener accepts authenticated connections, as Python's
// multiprocessing.connection.Listener does, and speaks its wire protocol:
// a CPython Client (3.11 or later) can connect to it, and Dial can connect
// to a CPython Listener.
//
// Every Listener authenticates. From Listen on, each incoming connection
// is authenticated in its own goroutine, bounded by a handshake timeout, so
// a slow, silent or hostile peer delays nobody else. A peer that fails the
// handshake is closed and never returned by Accept (see
// ListenConfig.OnHandshakeError); the Listener keeps serving. The accept
// loop never waits for handshakes: at most 512 run at once, and when that
// many are in progress a newcomer takes the place of the oldest one whose
// peer has not yet proved the key, so any number of silent peers delays a
// good client by no more than its own round trips. A peer that has proved
// the key is never dropped that way, however slow; connections waiting
// for Accept, authenticated, are not counted.
type Listener struct {
	cfg  ListenConfig
	opts options
	ln   net.Listener
	key  []byte

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	ready  chan *mp.Conn // authenticated connections for Accept
	failed chan struct{} // closed when the accept loop stops on an error
	err    error         // that error, written before failed is closed
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	unproved list.List // of *handshake, oldest first: peers yet to prove the key
	proved   int       // handshakes in progress whose peer proved the key
}

// A handshake is an incoming connection being authenticated.
type handshake struct {
	nc      net.Conn
	elem    *list.Element // in unproved, nil once proved or done
	proved  bool
	evicted bool // closed to make room; set under Listener.mu
}

// ListenConfig holds a Listener's options. The zero value gives the
// defaults that Listen uses.
type ListenConfig struct {
	// HandshakeTimeout bounds each incoming connection's handshake; zero
	// means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// OnHandshakeError, when not nil, is called for each incoming
	// connection that fails the handshake, with the peer's address and the
	// reason: an error matching mp.ErrAuthentication for a wrong key or a
	// peer that does not speak the protocol (malformed, oversized or
	// unexpected messages), os.ErrDeadlineExceeded for one slower than
	// HandshakeTimeout, ErrHandshakeEvicted for one dropped to make room
	// before it proved the key, io.EOF, io.ErrUnexpectedEOF or a reset for
	// one that hung up. It is called from the connection's own goroutine and
	// should return promptly: Close waits for it. It is not called for
	// connections cut short by Close.
	OnHandshakeError func(remote net.Addr, err error)

	// TLS, when not nil, makes the Listener run every connection inside
	// TLS with this server configuration (it needs Certificates; set
	// ClientAuth and ClientCAs to require client certificates too). Only
	// a Dialer with TLS set can then connect; CPython's Client cannot.
	// Without TLS, the key never crosses the wire but the messages do,
	// in clear: use TLS for a Listener reachable from other machines.
	// Peers whose TLS handshake fails are reported like other failed
	// handshakes, with an error matching mp.ErrAuthentication when the
	// TLS layer refused them (a certificate, a protocol mismatch).
	TLS *tls.Config

	// Logger, when not nil, is where each failed handshake is reported,
	// instead of the logger set with mp.SetLogger: a record "mp: handshake
	// failed" at level Warn with the attributes remote (the peer's
	// address) and reason (the error OnHandshakeError gets, as text). No
	// record holds the key or the bytes of a challenge or an answer.
	// Connections cut short by Close are not reported.
	Logger *slog.Logger
}

// Listen starts a Listener with the default options; see
// [ListenConfig.Listen].
func Listen(network, address string, authkey []byte, opts ...Option) (*Listener, error) {
	return ListenConfig{}.Listen(network, address, authkey, opts...)
}

// Listen starts a Listener on network "unix" or "tcp" ("tcp4", "tcp6"). It
// accepts and authenticates connections from then on, until Close.
//
// An empty unix address makes a Linux abstract socket under a new random
// name ("@mp-listener-..."): it lives in no directory, so nothing is left
// on disk however the process ends, and it goes with the Listener. An
// empty tcp address means 127.0.0.1 on a free port. Addr tells where. A
// unix address starting with "@" names an abstract socket; any other is a
// path, whose socket file Close removes (a process killed before Close
// leaves it, and a later Listen at that path fails until it is removed).
//
// A nil authkey means [mp.CurrentProcess]().Authkey, the key every process
// of this tree shares; an empty one is refused. A TCP Listener reachable
// from other machines (on any address but loopback) must be given an
// authkey explicitly; its traffic travels in clear unless
// ListenConfig.TLS is set (see Security in the package's doc).
//
// Options change the connections Accept returns: WithPickle makes their
// Send and Recv speak pickle, as CPython's send and recv do.
func (lc ListenConfig) Listen(network, address string, authkey []byte, opts ...Option) (*Listener, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	key, err := resolveAuthkey(authkey)
	if err != nil {
		return nil, err
	}
	l := &Listener{cfg: lc, key: key, opts: collect(opts)}
	if network == "unix" {
		if address == "" {
			l.ln, err = listenAbstract("mp-listener-")
		}
	} else {
		if address == "" {
			address = "127.0.0.1:0"
			if network == "tcp6" {
				address = "[::1]:0"
			}
		}
		if authkey == nil && !loopbackHost(address) {
			return nil, offLoopback(address)
		}
	}
	if l.ln == nil && err == nil {
		l.ln, err = net.Listen(network, address)
	}
	if err != nil {
		return nil, err
	}
	// A host name is checked where it was bound.
	if ta, ok := l.ln.Addr().(*net.TCPAddr); ok && authkey == nil && !ta.IP.IsLoopback() {
		l.ln.Close()
		return nil, offLoopback(address)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.ready = make(chan *mp.Conn)
	l.failed = make(chan struct{})
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func offLoopback(address string) error {
	return fmt.Errorf("mp: a TCP listener on %s, off loopback, needs an explicit authkey", address)
}

// loopbackHost reports whether address ("host:port") names a loopback
// host. An empty host (every interface) is not loopback; a host name other
// than "localhost" is checked once bound.
func loopbackHost(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return true // net.Listen reports the bad address
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return host != ""
}

// Addr returns the address the Listener is bound to: for TCP, with the port
// chosen; for a unix socket, its path, or "@name" for an abstract one.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for the next authenticated connection. It returns ctx.Err()
// when ctx ends first and mp.ErrClosed once the Listener is closed. A peer
// that fails the handshake is not returned (see [ListenConfig.OnHandshakeError]): Accept
// goes on waiting for the next one.
func (l *Listener) Accept(ctx context.Context) (*mp.Conn, error) {
	if l.ctx.Err() != nil {
		return nil, mp.ErrClosed
	}
	select {
	case c := <-l.ready:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, mp.ErrClosed
	case <-l.failed:
		return nil, l.err
	}
}

// acceptLoop accepts connections and authenticates each in its own
// goroutine. It never waits for a handshake: when maxHandshakes are in
// progress, the oldest one whose peer has not proved the key is dropped.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			if !temporary(err) {
				l.err = fmt.Errorf("mp: accept: %w", err)
				close(l.failed)
				return
			}
			if (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && l.evictOldest() {
				continue // a descriptor was freed
			}
			// Out of descriptors or memory: wait for some to be freed.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		h := &handshake{nc: nc}
		l.mu.Lock()
		if l.unproved.Len()+l.proved >= maxHandshakes {
			l.evictLocked()
		}
		h.elem = l.unproved.PushBack(h)
		l.mu.Unlock()
		l.wg.Add(1)
		go l.serve(h)
	}
}

// evictOldest drops the oldest handshake whose peer has not proved the
// key, and reports whether there was one.
func (l *Listener) evictOldest() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evictLocked()
}

func (l *Listener) evictLocked() bool {
	e := l.unproved.Front()
	if e == nil {
		return false // all have proved the key: they are let through
	}
	h := l.unproved.Remove(e).(*handshake)
	h.elem = nil
	h.evicted = true
	h.nc.Close() // its goroutine sees the error and reports the eviction
	return true
}

// markProved moves h out of reach of eviction once its peer proved the
// key; it reports false if h was evicted first.
func (l *Listener) markProved(h *handshake) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.evicted {
		return false
	}
	l.unproved.Remove(h.elem)
	h.elem = nil
	h.proved = true
	l.proved++
	return true
}

// finish stops counting h as in progress and reports whether it was
// evicted.
func (l *Listener) finish(h *handshake) (evicted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.elem != nil {
		l.unproved.Remove(h.elem)
		h.elem = nil
	}
	if h.proved {
		h.proved = false
		l.proved--
	}
	return h.evicted
}

// temporary reports accept errors worth retrying.
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// serve authenticates h's connection and hands it to Accept.
func (l *Listener) serve(h *handshake) {
	defer l.wg.Done()
	nc := h.nc
	timeout := l.cfg.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	nc.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(l.ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	var rw io.ReadWriter = nc
	var tc *tls.Conn
	var err error
	if l.cfg.TLS != nil {
		if tc, err = serverTLS(nc, l.cfg.TLS); err == nil {
			rw = tc
		}
	}
	// auth.Server, in its two halves: once the peer has answered our
	// challenge it knows the key, and is no longer evicted.
	m := auth.Stream{RW: rw}
	if err == nil {
		err = auth.DeliverChallenge(m, l.key, nil)
	}
	if err == nil && !l.markProved(h) {
		err = ErrHandshakeEvicted
	}
	if err == nil {
		err = auth.AnswerChallenge(m, l.key)
	}
	if l.finish(h) {
		err = ErrHandshakeEvicted
	}
	if !stop() {
		err = mp.ErrClosed // Close interrupted the handshake
	}
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	if err != nil {
		nc.Close()
		if err != ErrHandshakeEvicted {
			err = handshakeError(err)
		}
		l.handshakeFailed(nc.RemoteAddr(), err)
		return
	}
	var c *mp.Conn
	if tc != nil {
		c, err = bridgeTLS(tc, nc)
	} else {
		c, err = wrap(nc)
	}
	if err != nil {
		l.handshakeFailed(nc.RemoteAddr(), err)
		return
	}
	c = l.opts.apply(c)
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

// handshakeFailed reports a failed handshake to the logger and to
// OnHandshakeError, unless Close cut it short.
func (l *Listener) handshakeFailed(remote net.Addr, err error) {
	if l.ctx.Err() != nil {
		return
	}
	mplog.Or(l.cfg.Logger).LogAttrs(context.Background(), slog.LevelWarn, "mp: handshake failed",
		slog.String("remote", remote.String()), slog.String("reason", err.Error()))
	if l.cfg.OnHandshakeError != nil {
		l.cfg.OnHandshakeError(remote, err)
	}
}

// Close stops the Listener: Accept returns mp.ErrClosed, connections not yet
// returned by Accept are closed, and a unix socket's file is removed.
// Connections already returned stay open. Close waits for the Listener's
// goroutines to end; it is idempotent.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.closeErr = l.ln.Close()
		l.wg.Wait()
	})
	return l.closeErr
}

// listenAbstract listens on a Linux abstract unix socket with a new random
// name that starts with prefix ("@mp-listener-3f2a..."). Such a socket is
// never a file: it vanishes with its last descriptor, so a killed process
// leaves nothing behind. Any local process may connect to it (there are
// no file permissions), which the authkey handshake answers.
func listenAbstract(prefix string) (net.Listener, error) {
	var err error
	for range 8 {
		var b [12]byte
		rand.Read(b[:])
		var ln net.Listener
		ln, err = net.Listen("unix", "@"+prefix+hex.EncodeToString(b[:]))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, err
}

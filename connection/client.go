//go:build linux

package connection

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/auth"
)

// Dial connects to a Listener — a Go one or CPython's
// multiprocessing.connection.Listener — at address and authenticates, as
// Python's multiprocessing.connection.Client does. network is "unix" or
// "tcp" ("tcp4", "tcp6"). A nil authkey means [mp.CurrentProcess]().Authkey.
//
// Authentication is mutual: Dial answers the listener's challenge (with
// HMAC-SHA256, or HMAC-MD5 to a CPython 3.11 listener) and then challenges
// the listener in turn. A wrong key on either side gives an error matching
// [mp.ErrAuthentication]; no message is exchanged before both checks pass.
//
// ctx bounds the connection and the handshake. A Go Listener authenticates
// a connection as soon as it arrives; a CPython Listener only does so
// inside accept(), so against one Dial waits until the program accepts.
//
// Options change the connection: WithPickle makes its Send and Recv speak
// pickle, as CPython's send and recv do.
func Dial(ctx context.Context, network, address string, authkey []byte, opts ...Option) (*mp.Conn, error) {
	return Dialer{}.Dial(ctx, network, address, authkey, opts...)
}

// A Dialer holds options for connecting to a Listener. The zero value
// connects as Dial does.
type Dialer struct {
	// TLS, when not nil, runs the connection inside TLS with this client
	// configuration; the Listener must offer TLS (ListenConfig.TLS), and
	// the authkey handshake then runs inside it. An empty ServerName is
	// taken from the address's host. Set RootCAs to verify a server whose
	// certificate is signed by a private CA, and Certificates to present
	// a client certificate. Without TLS, the key never crosses the wire
	// but the messages do, in clear.
	TLS *tls.Config
}

// Dial is [Dial] with d's options. A Dial without TLS to a Listener that
// requires it fails with an error matching ErrTLSRequired, and one with
// TLS to a listener that does not offer it with ErrNoTLS; both match
// mp.ErrAuthentication, as does a certificate refused by either side.
func (d Dialer) Dial(ctx context.Context, network, address string, authkey []byte, opts ...Option) (*mp.Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	key, err := resolveAuthkey(authkey)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	var tc *tls.Conn
	err = withContext(ctx, nc, func() error {
		if d.TLS == nil {
			return auth.Client(plainPeer{auth.Stream{RW: nc}}, key, nil)
		}
		var err error
		if tc, err = clientTLS(nc, address, d.TLS); err != nil {
			return err
		}
		return tlsAlert(auth.Client(auth.Stream{RW: tc}, key, nil))
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	var c *mp.Conn
	if tc != nil {
		c, err = bridgeTLS(tc, nc)
	} else {
		c, err = wrap(nc)
	}
	if err != nil {
		return nil, err
	}
	return collect(opts).apply(c), nil
}

// Client is Dial with the network guessed from the address, as Python's
// Client guesses the family: an address that contains a "/" or starts with
// "@" (a Linux abstract socket) is a unix socket; any other is a TCP
// "host:port".
func Client(ctx context.Context, address string, authkey []byte, opts ...Option) (*mp.Conn, error) {
	network := "tcp"
	if strings.Contains(address, "/") || strings.HasPrefix(address, "@") {
		network = "unix"
	}
	return Dial(ctx, network, address, authkey, opts...)
}

// wrap makes an authenticated socket into an mp.Conn, which owns it from
// then on. The handshake read exactly its own frames, so no byte of what
// follows is lost.
func wrap(nc net.Conn) (*mp.Conn, error) {
	t, ok := nc.(mp.Transport)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("mp: %T is not a socket", nc)
	}
	c, err := mp.NewConn(t, true, true)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// checkNetwork accepts the stream networks that carry CPython's framing.
func checkNetwork(network string) error {
	switch network {
	case "unix", "tcp", "tcp4", "tcp6":
		return nil
	}
	return fmt.Errorf("mp: unsupported network %q (want unix, tcp, tcp4 or tcp6)", network)
}

// resolveAuthkey returns the key to authenticate with: a copy of authkey,
// or the process tree's key when authkey is nil. An empty non-nil key is
// refused: it would authenticate nobody.
func resolveAuthkey(authkey []byte) ([]byte, error) {
	if authkey == nil {
		return mp.CurrentProcess().Authkey, nil
	}
	if len(authkey) == 0 {
		return nil, errors.New("mp: empty authkey")
	}
	return append([]byte(nil), authkey...), nil
}

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked
// reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// withContext runs the handshake fn on nc under ctx: ctx's deadline bounds
// it and cancelling ctx interrupts it. The deadline is cleared afterwards.
// Errors are wrapped for mp's callers: handshake failures match
// mp.ErrAuthentication, cancellation matches ctx.Err().
func withContext(ctx context.Context, nc net.Conn, fn func() error) error {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	err := fn()
	if !stop() {
		// ctx ended during the handshake; the deadline it set may land
		// at any moment, so the connection is unusable even on success.
		return fmt.Errorf("mp: handshake: %w", ctx.Err())
	}
	if err != nil {
		if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket's deadline is ctx's; ctx is about to report it.
			<-ctx.Done()
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("mp: handshake: %w", cerr)
		}
		return handshakeError(err)
	}
	return nc.SetDeadline(time.Time{})
}

// handshakeError wraps an error from package auth: a failed handshake
// matches mp.ErrAuthentication; an I/O error keeps its identity.
func handshakeError(err error) error {
	switch {
	case errors.Is(err, auth.ErrAuthentication):
		return fmt.Errorf("%w: %w", mp.ErrAuthentication, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("mp: handshake timed out: %w", err)
	}
	return fmt.Errorf("mp: handshake: %w", err)
}

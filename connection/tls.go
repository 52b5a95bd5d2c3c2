package connection

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/auth"
	"golang.org/x/sys/unix"
)

// startTLS is the frame a TLS Listener sends in clear before the TLS
// handshake (see the package's doc, Security).
var startTLS = []byte("#STARTTLS#")

var (
	// ErrTLSRequired is returned by a Dial without TLS to a Listener that
	// requires it. It matches mp.ErrAuthentication too.
	ErrTLSRequired = errors.New("mp: the listener requires TLS")
	// ErrNoTLS is returned by a Dial with TLS to a listener that does not
	// offer it (a plain Go Listener, or CPython's). It matches
	// mp.ErrAuthentication too.
	ErrNoTLS = errors.New("mp: the listener does not offer TLS")
)

// serverTLS announces TLS on nc and runs the server's TLS handshake.
func serverTLS(nc net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	if err := (auth.Stream{RW: nc}).SendBytes(startTLS); err != nil {
		return nil, err
	}
	tc := tls.Server(nc, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, tlsFailure(err)
	}
	return tc, nil
}

// clientTLS expects the listener's announcement on nc and runs the
// client's TLS handshake. address gives the server name to verify when
// cfg names none.
func clientTLS(nc net.Conn, address string, cfg *tls.Config) (*tls.Conn, error) {
	msg, err := auth.Stream{RW: nc}.RecvBytes(auth.MaxMessage)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(msg, startTLS) {
		return nil, fmt.Errorf("%w: %w", mp.ErrAuthentication, ErrNoTLS)
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(address); err == nil && host != "" {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, tlsFailure(err)
	}
	return tc, nil
}

// tlsFailure makes a failed TLS handshake an authentication failure (a
// certificate refused by either side, a peer that does not speak TLS),
// and leaves I/O errors (a timeout, a hang-up) as they are.
func tlsFailure(err error) error {
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	if !remoteAlert(err) && !errors.As(err, &verify) && !errors.As(err, &record) {
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) {
			return err
		}
	}
	return tlsRefused(err)
}

// tlsAlert makes an alert from the peer an authentication failure: with
// TLS 1.3, a server that refuses the client's certificate says so after
// the client's handshake is over, at its first read.
func tlsAlert(err error) error {
	if remoteAlert(err) {
		return tlsRefused(err)
	}
	return err
}

// remoteAlert reports whether err is an alert the TLS peer sent, which
// crypto/tls reports as a *net.OpError of Op "remote error".
func remoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

func tlsRefused(err error) error { return fmt.Errorf("%w: %w", mp.ErrAuthentication, err) }

// plainPeer is the handshake of a Dial without TLS: it recognises a
// listener's TLS announcement, which would otherwise be a confusing
// "expected a challenge".
type plainPeer struct{ auth.Stream }

func (p plainPeer) RecvBytes(maxLength int) ([]byte, error) {
	msg, err := p.Stream.RecvBytes(maxLength)
	if err == nil && bytes.Equal(msg, startTLS) {
		return nil, fmt.Errorf("%w: %w", mp.ErrAuthentication, ErrTLSRequired)
	}
	return msg, err
}

// bridgeTLS makes an authenticated TLS connection into an mp.Conn, which
// owns it from then on. An mp.Conn reads and writes a socket's descriptor
// directly, so it gets one end of a socket pair, and two goroutines copy
// between the other end and the TLS connection until either side closes.
//
// Such a connection carries bytes only: handles (descriptors) cannot
// travel over a network, and a message that carries some ends the
// connection (the pair is a unix socket, so the mp.Conn does not refuse
// to send them).
func bridgeTLS(tc *tls.Conn, raw net.Conn) (*mp.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		raw.Close()
		return nil, os.NewSyscallError("socketpair", err)
	}
	ours, err1 := fileConn(fds[0])
	theirs, err2 := fileConn(fds[1])
	if err := errors.Join(err1, err2); err != nil {
		for _, c := range []net.Conn{ours, theirs} {
			if c != nil {
				c.Close()
			}
		}
		raw.Close()
		return nil, err
	}
	c, err := wrap(theirs)
	if err != nil {
		ours.Close()
		raw.Close()
		return nil, err
	}
	b := &bridge{tc: tc, raw: raw, local: ours.(*net.UnixConn)}
	go b.fromPeer()
	go b.toPeer()
	return c, nil
}

// fileConn makes a net.Conn of socket descriptor fd, which it takes.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "mp-tls-bridge")
	defer f.Close() // net.FileConn made its own copy
	return net.FileConn(f)
}

// A bridge copies between a TLS connection and the local end of the
// socket pair whose other end an mp.Conn has.
type bridge struct {
	tc        *tls.Conn
	raw       net.Conn // under tc
	local     *net.UnixConn
	closeOnce sync.Once
}

// close ends both directions at once: closing the sockets under them
// interrupts whatever they are blocked in.
func (b *bridge) close() {
	b.closeOnce.Do(func() {
		b.raw.Close()
		b.local.Close()
	})
}

// fromPeer copies what the peer sends to the mp.Conn. When the peer is
// done, the mp.Conn sees the end of its stream (and may still send).
func (b *bridge) fromPeer() {
	_, err := io.Copy(b.local, b.tc)
	if err != nil {
		b.close()
		return
	}
	b.local.CloseWrite()
}

// toPeer copies what the mp.Conn sends to the peer; when the mp.Conn is
// closed, it tells the peer (TLS close_notify) and ends the bridge.
func (b *bridge) toPeer() {
	defer b.close()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := b.local.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			closeRights(oob[:oobn])
			return // handles cannot go on; the message would be garbled
		}
		if n > 0 {
			if _, err := b.tc.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				b.tc.CloseWrite()
			}
			return
		}
	}
}

// closeRights closes the descriptors received in a control message.
func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

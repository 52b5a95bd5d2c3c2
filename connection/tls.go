//go:build linux

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
	"sync/atomic"
	"time"

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
	b := &bridge{
		tc: tc, raw: raw, local: ours.(*net.UnixConn),
		linger:  bridgeLinger,
		writes:  make(chan []byte),
		written: make(chan error, 1), // the writer never waits for a toPeer that gave up
	}
	b.running.Store(3)
	liveBridges.Add(1)
	go b.fromPeer()
	go b.toPeer()
	go b.writer()
	return c, nil
}

// liveBridges counts the bridges whose goroutines have not all ended, for
// the tests: a closed mp.Conn must not leave its bridge behind.
var liveBridges atomic.Int64

// hangupCheck is how often toPeer, while a write to the peer is pending,
// looks whether the mp.Conn's end has hung up: it is not reading the local
// socket then, so nothing else would notice.
const hangupCheck = 250 * time.Millisecond

// bridgeLinger is how long, once the mp.Conn's end has hung up, a write to
// the peer may stay pending before the bridge gives up and drops the rest.
// A peer that reads slowly still gets what was sent before Close, as over
// a plain connection (whose kernel goes on sending after close); one that
// stops reading cannot hold the bridge, its goroutines and descriptors for
// ever. Each completed write starts it again. A variable for the tests.
var bridgeLinger = 30 * time.Second

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
	running   atomic.Int32 // goroutines not ended yet

	linger time.Duration
	// writes carries toPeer's writes to the writer goroutine (nil:
	// CloseWrite), written their results. A write to a peer that does not
	// read blocks for ever, and crypto/tls makes a write deadline
	// permanent, so toPeer hands the write over and watches the mp.Conn
	// meanwhile rather than blocking in it.
	writes  chan []byte
	written chan error

	// toPeer's own: whether it has seen the mp.Conn's end hang up, and
	// from then on when a pending write makes it give up.
	hungUp   bool
	deadline time.Time
}

// exit records that one of the bridge's goroutines has ended.
func (b *bridge) exit() {
	if b.running.Add(-1) == 0 {
		liveBridges.Add(-1)
	}
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
	defer b.exit()
	_, err := io.Copy(b.local, b.tc)
	if err != nil {
		b.close()
		return
	}
	b.local.CloseWrite()
}

// toPeer copies what the mp.Conn sends to the peer; when the mp.Conn is
// closed, it tells the peer (TLS close_notify) and ends the bridge. A peer
// that stops reading does not keep it: see write.
func (b *bridge) toPeer() {
	defer b.exit()
	defer close(b.writes) // ends the writer, once a pending write fails
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
			if err := b.write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				b.write(nil)
			}
			return
		}
	}
}

// errGaveUp ends a write to a peer that stopped reading after the mp.Conn
// hung up.
var errGaveUp = errors.New("mp: the TLS peer does not read")

// write has the writer write p to the peer (nil: CloseWrite) and waits
// for it. While it waits, it looks every hangupCheck whether the mp.Conn
// has hung up, and then gives the peer bridgeLinger to take the write.
func (b *bridge) write(p []byte) error {
	b.writes <- p
	select {
	case err := <-b.written: // most writes: no timer
		return b.wrote(err)
	default:
	}
	t := time.NewTimer(hangupCheck)
	defer t.Stop()
	for {
		select {
		case err := <-b.written:
			return b.wrote(err)
		case <-t.C:
		}
		if !b.hungUp && b.localHungUp() {
			b.hungUp = true
			b.deadline = time.Now().Add(b.linger)
		}
		if b.hungUp && !time.Now().Before(b.deadline) {
			// Closing raw makes the pending write fail, so the
			// writer does not stay behind.
			b.close()
			return errGaveUp
		}
		t.Reset(hangupCheck)
	}
}

// wrote gives the peer a new bridgeLinger after each write it took.
func (b *bridge) wrote(err error) error {
	if err == nil && b.hungUp {
		b.deadline = time.Now().Add(b.linger)
	}
	return err
}

// writer does toPeer's writes to the peer, one at a time.
func (b *bridge) writer() {
	defer b.exit()
	for p := range b.writes {
		var err error
		if p == nil {
			err = b.tc.CloseWrite()
		} else {
			_, err = b.tc.Write(p)
		}
		b.written <- err
	}
}

// localHungUp reports whether the mp.Conn's end of the socket pair has
// been closed (or shut for writing: it sends no more). Only toPeer reads
// local, and it does not while it waits for a write, so polling the
// descriptor directly takes nothing from anyone.
func (b *bridge) localHungUp() bool {
	rc, err := b.local.SyscallConn()
	if err != nil {
		return true
	}
	hungUp := false
	err = rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(pfd, 0)
		hungUp = err == nil && n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
	})
	return err != nil || hungUp
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

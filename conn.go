//go:build linux

package mp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/frame"
	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/connhook"
	"github.com/go-mp/mp/internal/ringconn"
)

// Conn is one end of a connection that carries whole messages: a Pipe end,
// or a connection made by a Listener or Client. Its framing is CPython's
// multiprocessing.connection framing, so a Python peer can exchange
// SendBytes/RecvBytes messages with it.
//
// Send and Recv carry Go values encoded with CBOR. A Conn may be sent inside
// a value over another unix-socket Conn or passed to a child as an argument;
// it arrives working on the other side.
//
// One goroutine may send while another receives; concurrent senders (or
// receivers) are serialised, so messages never interleave.
//
// SetDeadline, SetReadDeadline and SetWriteDeadline bound the waits of
// receiving and sending as in net.Conn; a call they end returns an error
// matching os.ErrDeadlineExceeded and leaves the Conn usable, every
// message whole (see SetReadDeadline and SetWriteDeadline).
//
// Several processes may hold the same end (a Conn passed to children keeps
// working in the parent too). Poll never takes anything out of the shared
// socket. The holders of a Pipe end take turns for each message (see
// Pipe): whichever processes send and receive on its copies, each message
// is received once, whole, and the messages of one sender in the order
// sent. A Conn made by a Listener or Client reads ahead instead, for
// speed: besides the message Recv returns, the following messages' bytes
// (up to 64 KiB) may move into this process's buffer, and they are lost
// to the end's other holders if this process exits or closes its copy
// without receiving them; let one process at a time receive on such an
// end, or use a Queue, which is made for many consumers.
type Conn struct {
	t        Transport
	rc       syscall.RawConn
	unix     bool // a unix socket: descriptors can travel with messages
	readable bool
	writable bool
	closed   atomic.Bool

	rmu      sync.Mutex
	rbuf     []byte // unread bytes are rbuf[rpos:rend]
	rpos     int
	rend     int
	buffered atomic.Int64 // rend-rpos, readable without rmu (for Wait)
	fds      []int        // received descriptors not yet claimed by a message
	oob      []byte
	maxLen   int64

	rd rawRead
	// pend is the message a read deadline interrupted; the next receive
	// goes on with it, so the stream stays in step.
	pend pendingRead

	wmu  sync.Mutex
	wbuf []byte
	wr   rawWrite
	// wpend is what a write deadline kept from going out of a message
	// whose first bytes did; the next send sends it first, so the peer
	// never sees a torn message.
	wpend []byte

	dl deadlines

	// alt, when set (by package connection, through connhook), encodes
	// and decodes the messages of Send and Recv in place of codec.
	alt connhook.Codec

	// pipe is set on the ends of a Pipe: see pipering.go.
	pipe *pipeEnd
}

func init() {
	connhook.SetCodec = func(conn any, cd connhook.Codec) { conn.(*Conn).alt = cd }
}

// deadlines is a Conn's copy of its read deadline. The transport holds
// the deadlines (so the runtime's poller ends a blocked wait, including
// one already waiting when a deadline is set); the copy is for what the
// transport does not see: messages already buffered, and Poll, which sets
// its own timeout on the transport for the time it waits.
type deadlines struct {
	mu        sync.Mutex
	read      time.Time
	pollUntil time.Time // the end of the wait of the Poll in progress, if any
	// readNano is read as UnixNano (0: none), loaded by each receive
	// without taking mu; writeNano is the write deadline, for the waits
	// that the transport does not see (a Pipe's rings).
	readNano  atomic.Int64
	writeNano atomic.Int64
}

// pendingRead is a message whose payload was partly read when the read
// deadline passed.
type pendingRead struct {
	active  bool
	discard bool // the message is over limit: skip the rest
	limit   int64
	out     []byte // bytes so far (out[:got]), owned by the Conn
	got     int64
	n       int64 // the payload's length
}

// Transport is the stream socket under a Conn: a *net.TCPConn,
// *net.UnixConn or an *os.File holding a non-blocking socket.
type Transport interface {
	syscall.Conn
	io.Closer
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

const (
	readBufSize = 64 << 10
	maxFDs      = 64 // descriptors per message
)

const (
	flagReadable uint32 = 1 << iota
	flagWritable
)

// NewConn makes a Conn that sends and receives framed messages over t, an
// established stream socket, and takes ownership of it. Listener and Client
// (package connection) use it; most programs get their Conns from Pipe.
func NewConn(t Transport, readable, writable bool) (*Conn, error) {
	rc, err := t.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &Conn{t: t, rc: rc, readable: readable, writable: writable}
	c.rc.Control(func(fd uintptr) {
		if sa, err := unix.Getsockname(int(fd)); err == nil {
			_, c.unix = sa.(*unix.SockaddrUnix)
		}
	})
	return c, nil
}

// connFromFD makes a Conn from a unix socket descriptor it takes
// ownership of.
func connFromFD(fd int, flags uint32) (*Conn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	f := os.NewFile(uintptr(fd), "mp-conn")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Conn{t: f, rc: rc, unix: true, readable: flags&flagReadable != 0, writable: flags&flagWritable != 0}, nil
}

// Pipe returns a pair of connected Conns. With duplex true both ends can
// send and receive; otherwise the first end only receives and the second
// only sends, as in Python.
//
// Once either end goes to another process (as an argument of a child, or
// inside a message), the Pipe carries its messages through rings in
// shared memory, about 129 KiB of it per Pipe, which a Pipe whose ends
// stay in one process never has (see pipering.go). The semantics stay
// those of the socket: io.EOF once every copy of the other end is closed,
// Poll, Wait, deadlines, handles inside messages. The holders of one end
// in several processes take turns through locks in that memory, so they
// need no lock of their own for whole messages; a holder that dies in the
// middle of a message sent or received over the socket (one that carries
// handles or is longer than 64 KiB) breaks that direction, which then
// fails with an error rather than misframe.
func Pipe(duplex bool) (*Conn, *Conn, error) {
	a, b, err := socketPipe(duplex)
	if err != nil {
		return nil, nil, err
	}
	pair := &pipePair{ends: [2]*Conn{a, b}}
	a.pipe = &pipeEnd{side: 0, pair: pair}
	b.pipe = &pipeEnd{side: 1, pair: pair}
	return a, b, nil
}

// socketPipe is Pipe for a caller that puts its own rings over the socket
// (a pool's worker link, see poolwire.go): its ends stay on the socket
// wherever they go.
func socketPipe(duplex bool) (*Conn, *Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	if !duplex {
		// The read end can never write and the write end never read,
		// whoever holds copies of them.
		unix.Shutdown(fds[0], unix.SHUT_WR)
		unix.Shutdown(fds[1], unix.SHUT_RD)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	a, err := connFromFD(fds[0], flagReadable|boolFlag(duplex, flagWritable))
	if err != nil {
		closeFD(fds[1])
		return nil, nil, err
	}
	b, err := connFromFD(fds[1], flagWritable|boolFlag(duplex, flagReadable))
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

func boolFlag(b bool, f uint32) uint32 {
	if b {
		return f
	}
	return 0
}

// Readable reports whether this end can receive.
func (c *Conn) Readable() bool { return c.readable }

// Writable reports whether this end can send.
func (c *Conn) Writable() bool { return c.writable }

// Closed reports whether Close has been called.
func (c *Conn) Closed() bool { return c.closed.Load() }

// Close closes this end. The peer sees io.EOF once every copy of this end
// (including copies passed to other processes) is closed. Close is
// idempotent.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	pr := c.detachRing()
	var err error
	if pr != nil {
		err = pr.rc.Close() // closes the socket too (see pipeSock)
	} else {
		err = c.t.Close()
	}
	c.rmu.Lock()
	for _, fd := range c.fds {
		closeFD(fd)
	}
	c.fds = nil
	if pr != nil {
		unlockPipe(pr.rlock, &c.pipe.heldR)
	}
	c.rmu.Unlock()
	if pr != nil {
		c.wmu.Lock()
		unlockPipe(pr.wlock, &c.pipe.heldW)
		c.wmu.Unlock()
		pr.release()
	}
	return err
}

// Fileno returns the descriptor of the underlying socket. It stays owned by
// the Conn. On a Pipe end whose messages go through rings (see Pipe) the
// descriptor turns readable for a message only while a receive, Poll or
// Wait of this process waits for one: wait with Wait, not on the
// descriptor alone.
func (c *Conn) Fileno() (int, error) {
	if c.closed.Load() {
		return -1, ErrClosed
	}
	fd := -1
	if err := c.rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// SetLimit caps the length of messages this Conn accepts; 0 (the default)
// means no cap. A longer message is discarded and reported as
// ErrMessageTooLong.
func (c *Conn) SetLimit(n int64) {
	c.rmu.Lock()
	c.maxLen = n
	c.rmu.Unlock()
}

// SetDeadline sets both the read and the write deadline, as
// SetReadDeadline and SetWriteDeadline do.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the time after which Recv, RecvBytes and
// RecvBytesInto fail with an error matching os.ErrDeadlineExceeded, as in
// net.Conn: a time already past makes the next receive fail at once (even
// when a message is waiting), a receive blocked when the deadline is set
// or passes is woken, and the zero time removes the deadline. Poll waits
// no longer than the deadline, and reports it passing the same way.
//
// A deadline loses nothing: when it passes in the middle of a message,
// the bytes read so far are kept, and the next receive returns that
// message whole. The deadline is this process's: a copy of the Conn in
// another process has its own.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return ErrClosed
	}
	d := &c.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	d.read = t
	if t.IsZero() {
		d.readNano.Store(0)
	} else {
		d.readNano.Store(max(t.UnixNano(), 1))
	}
	if c.pipe != nil {
		if pr := c.pipe.ring.Load(); pr != nil {
			pr.use(func() { pr.rc.SetReadDeadline(t) })
		}
	}
	return c.mapErr(c.t.SetReadDeadline(earliest(t, d.pollUntil)))
}

// SetWriteDeadline sets the time after which Send, SendBytes and
// SendBytesAt fail with an error matching os.ErrDeadlineExceeded, as in
// net.Conn: a time already past makes the next send fail at once, a send
// blocked (on a peer that does not read) is woken, and the zero time
// removes the deadline.
//
// A send that the deadline ends before any byte of its message went out
// sent nothing. One that it ends after the message's first bytes went out
// says so in its error, and keeps the rest: the next send on this Conn
// sends it before its own message, so the peer receives the message whole
// then. A message is never torn and never sent twice; if no send follows
// (the Conn is closed instead), the peer's receive reports
// io.ErrUnexpectedEOF.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if t.IsZero() {
		c.dl.writeNano.Store(0)
	} else {
		c.dl.writeNano.Store(max(t.UnixNano(), 1))
	}
	if c.pipe != nil {
		if pr := c.pipe.ring.Load(); pr != nil {
			pr.rc.SetWriteDeadline(t)
		}
	}
	return c.mapErr(c.t.SetWriteDeadline(t))
}

// earliest returns the earlier of two times, the zero time meaning never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// readDeadlinePassed reports whether the read deadline is set and past.
func (c *Conn) readDeadlinePassed() bool {
	d := c.dl.readNano.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

// MarshalCBOR lets a Conn travel inside a message sent by mp: its descriptor
// goes beside the message (and a Pipe end's rings, see pipering.go). It
// fails outside mp's sending path.
func (c *Conn) MarshalCBOR() ([]byte, error) {
	fd, err := c.Fileno()
	if err != nil {
		return nil, err
	}
	sock, err := codec.EncodeHandle(codec.HandleConn, fd, boolFlag(c.readable, flagReadable)|boolFlag(c.writable, flagWritable))
	if err != nil || c.pipe == nil {
		return sock, err
	}
	return c.marshalPipe(sock)
}

// UnmarshalCBOR receives a Conn sent by mp.
func (c *Conn) UnmarshalCBOR(data []byte) error {
	if isPipeWire(data) {
		return c.unmarshalPipe(data)
	}
	fd, flags, err := codec.DecodeHandle(data, codec.HandleConn)
	if err != nil {
		return err
	}
	nc, err := connFromFD(fd, flags)
	if err != nil {
		return err
	}
	*c = Conn{t: nc.t, rc: nc.rc, unix: true, readable: nc.readable, writable: nc.writable}
	return nil
}

// ---- sending ----

// Send encodes v with the default codec (or pickle, for a connection made
// with connection.WithPickle) and sends it as one message.
func (c *Conn) Send(v any) error {
	if err := c.checkWrite(); err != nil {
		return err
	}
	if c.alt != nil {
		b, err := c.alt.Encode(v)
		if err != nil {
			return err
		}
		return c.writeMessage(b, nil)
	}
	b, fds, err := codec.EncodeMessage(v)
	if err != nil {
		return err
	}
	err = c.writeMessage(b, fds)
	codec.CloseFDs(fds)
	return err
}

// SendBytes sends b as one message, without encoding.
func (c *Conn) SendBytes(b []byte) error {
	if err := c.checkWrite(); err != nil {
		return err
	}
	return c.writeMessage(b, nil)
}

// SendBytesAt sends size bytes of buf starting at offset, as Python's
// send_bytes(buf, offset, size) does; size < 0 means the rest of buf.
func (c *Conn) SendBytesAt(buf []byte, offset, size int) error {
	if offset < 0 || offset > len(buf) {
		return fmt.Errorf("mp: offset %d out of range for a %d-byte buffer", offset, len(buf))
	}
	if size < 0 {
		size = len(buf) - offset
	}
	if size > len(buf)-offset {
		return fmt.Errorf("mp: offset %d + size %d out of range for a %d-byte buffer", offset, size, len(buf))
	}
	return c.SendBytes(buf[offset : offset+size])
}

func (c *Conn) checkWrite() error {
	if c.closed.Load() {
		return ErrClosed
	}
	if !c.writable {
		return ErrNotWritable
	}
	return nil
}

const smallMessage = 32 << 10

// spinFor is how long a receiver polls an empty socket before it sleeps:
// a reply often comes within microseconds, and waking a sleeping CPU costs
// more than that. The polling uses RawSyscall (recvmsg on a non-blocking
// socket never blocks): with Syscall, each poll let the scheduler hand the
// thread's P around, and spinning made round trips slower instead of 3x
// faster.
var spinFor = 50 * time.Microsecond

func (c *Conn) writeMessage(b []byte, fds []int) error {
	if len(fds) > maxFDs {
		return fmt.Errorf("mp: a message can carry at most %d handles, not %d", maxFDs, len(fds))
	}
	if len(fds) > 0 && !c.unix {
		return errors.New("mp: handles can only be sent over unix-socket connections")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.pipe != nil {
		if pr := c.pipe.ring.Load(); pr != nil {
			return c.writePipe(pr, b, fds)
		}
	}
	if err := c.sendPending(); err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var err error
	if len(b) <= smallMessage {
		c.wbuf = append(frame.AppendHeader(c.wbuf[:0], len(b)), b...)
		err = c.writeAll([][]byte{c.wbuf}, oob)
	} else {
		c.wbuf = frame.AppendHeader(c.wbuf[:0], len(b))
		err = c.writeAll([][]byte{c.wbuf, b}, oob)
	}
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil
	}
	return err
}

// sendPending sends what a write deadline kept back of the last message,
// if anything. Called with wmu held.
func (c *Conn) sendPending() error {
	if len(c.wpend) == 0 {
		return nil
	}
	rest := c.wpend
	c.wpend = nil
	if err := c.writeAll([][]byte{rest}, nil); err != nil {
		if c.wpend == nil {
			c.wpend = rest // none of it went out
		}
		return fmt.Errorf("mp: this message was not sent; the rest of an earlier one was still going out: %w", err)
	}
	return nil
}

// writeAll writes bufs in full; oob goes with the first byte. When the
// write deadline stops it after some bytes went out, the rest is kept in
// wpend for the next send.
func (c *Conn) writeAll(bufs [][]byte, oob []byte) error {
	w := &c.wr
	if w.fn == nil {
		w.fn = c.sendmsg // made once, like the reader's callback
	}
	sent := 0
	for len(bufs) > 0 {
		w.bufs, w.oob, w.n, w.err = bufs, oob, 0, nil
		err := c.rc.Write(w.fn)
		w.bufs, w.oob = nil, nil
		if err == nil {
			err = w.err
		}
		if err != nil {
			err = c.mapErr(err)
			if sent > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				// The peer has the message's first bytes: keep the
				// rest (copied, the caller's buffers are its own).
				var rest []byte
				for _, b := range bufs {
					rest = append(rest, b...)
				}
				c.wpend = rest
				return fmt.Errorf("mp: the write deadline passed after %d bytes of the message went out; the next send sends the other %d first: %w", sent, len(rest), err)
			}
			return err
		}
		sent += w.n
		oob = nil
		for n := w.n; n > 0 && len(bufs) > 0; {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				n = 0
			} else {
				n -= len(bufs[0])
				bufs = bufs[1:]
			}
		}
	}
	return nil
}

// rawWrite is the state of the write in progress, kept in the Conn so that
// writing allocates nothing.
type rawWrite struct {
	fn   func(fd uintptr) bool
	bufs [][]byte // the first len(iov) go in one sendmsg
	oob  []byte
	n    int
	err  error
	hdr  unix.Msghdr
	iov  [16]unix.Iovec
}

// sendmsg is the poller callback of writeAll (MSG_NOSIGNAL: a closed peer
// is an error, not a signal).
func (c *Conn) sendmsg(fd uintptr) bool {
	w := &c.wr
	niov := 0
	for _, b := range w.bufs[:min(len(w.bufs), len(w.iov))] {
		if len(b) > 0 {
			w.iov[niov].Base = &b[0]
			w.iov[niov].SetLen(len(b))
			niov++
		}
	}
	w.hdr = unix.Msghdr{Iov: &w.iov[0]}
	w.hdr.SetIovlen(niov)
	if len(w.oob) > 0 {
		w.hdr.Control = &w.oob[0]
		w.hdr.SetControllen(len(w.oob))
	}
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&w.hdr)), unix.MSG_NOSIGNAL)
		switch errno {
		case 0:
			w.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			w.err = errno
			return true
		}
	}
}

// ---- receiving ----

// Recv receives one message and decodes it into v, which must be a
// non-nil pointer. It returns io.EOF when the peer has closed and no
// message is left.
func (c *Conn) Recv(v any) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	var dst []byte
	if c.alt == nil {
		// The default codec copies what it keeps of a message (see
		// decodeBuffer): it may decode in place.
		dst = c.decodeBuffer()
	}
	msg, err := c.readMessage(dst)
	if err != nil {
		return err
	}
	if c.alt != nil {
		return c.alt.Decode(msg, v)
	}
	used, err := codec.DecodeMessage(msg, c.fds, v)
	c.fds = c.fds[used:]
	return err
}

// RecvBytes receives one message as bytes. maxLength > 0 caps its length:
// a longer message is discarded and ErrMessageTooLong returned.
func (c *Conn) RecvBytes(maxLength int) ([]byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if maxLength > 0 {
		old := c.maxLen
		if old == 0 || int64(maxLength) < old {
			c.maxLen = int64(maxLength)
		}
		defer func() { c.maxLen = old }()
	}
	msg, err := c.readMessage(nil)
	c.dropFDs()
	return msg, err
}

// RecvBytesInto receives one message into buf[offset:] and returns its
// length. If it does not fit, the error is a *BufferTooShortError holding
// the whole message.
func (c *Conn) RecvBytesInto(buf []byte, offset int) (int, error) {
	if offset < 0 || offset > len(buf) {
		return 0, fmt.Errorf("mp: offset %d out of range for a %d-byte buffer", offset, len(buf))
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, err := c.readMessage(buf[offset:])
	c.dropFDs()
	if err != nil {
		return 0, err
	}
	if len(msg) > len(buf)-offset || (len(msg) > 0 && &msg[0] != &buf[offset]) {
		return 0, &BufferTooShortError{Message: msg}
	}
	return len(msg), nil
}

// dropFDs closes descriptors that arrived with a bytes message: they have
// no handle to claim them. Those of a message a deadline interrupted stay
// for the receive that finishes it.
func (c *Conn) dropFDs() {
	if c.pend.active {
		return
	}
	for _, fd := range c.fds {
		closeFD(fd)
	}
	c.fds = c.fds[:0]
}

// Poll reports whether a message (or EOF) is ready to be received, waiting
// up to timeout; timeout < 0 waits without limit. Poll only looks: it
// takes nothing out of the socket, so when several processes share a
// Conn, a message one of them polled stays for whichever receives it.
// It waits no longer than the read deadline: when the deadline ends its
// wait, it returns false and an error matching os.ErrDeadlineExceeded.
func (c *Conn) Poll(timeout time.Duration) (bool, error) {
	if err := c.checkRead(); err != nil {
		return false, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rend > c.rpos {
		return true, nil
	}
	var ready bool
	var perr error
	var pr *pipeRing
	if c.pipe != nil {
		pr = c.pipe.ring.Load()
	}
	look := func(fd uintptr) bool {
		if pr != nil {
			ready, perr = c.pipeReady(pr, fd)
		} else {
			ready, perr = peekReadable(fd)
		}
		return ready
	}
	var err error
	if timeout == 0 || c.readDeadlinePassed() {
		// Only a look: the transport's deadline would refuse one.
		err = c.rc.Control(func(fd uintptr) { look(fd) })
		if err == nil && perr == nil && !ready && timeout != 0 {
			err = os.ErrDeadlineExceeded
		}
	} else {
		if timeout > 0 {
			c.setPollUntil(time.Now().Add(timeout))
			defer c.setPollUntil(time.Time{})
		}
		// Read calls look, and while it reports false waits (in the
		// runtime's poller, so that Close and the deadline end the wait)
		// until the socket is readable.
		err = c.rc.Read(look)
	}
	if err == nil {
		err = perr
	}
	switch err = c.mapErr(err); {
	case err == nil:
		return ready, nil
	case err == io.EOF:
		return true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		if c.readDeadlinePassed() {
			return false, err
		}
		return false, nil // the timeout
	}
	return false, err
}

// setPollUntil sets the transport's read deadline to the earlier of t
// (the end of Poll's wait, zero when it is over) and the read deadline.
func (c *Conn) setPollUntil(t time.Time) {
	d := &c.dl
	d.mu.Lock()
	d.pollUntil = t
	c.t.SetReadDeadline(earliest(d.read, t))
	d.mu.Unlock()
}

// peekReadable looks, without taking it, whether a byte, EOF or an error
// is waiting on socket fd (ready), and returns the error if there is one.
func peekReadable(fd uintptr) (ready bool, err error) {
	var b [1]byte
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return true, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false, nil
		}
		return true, os.NewSyscallError("recv", errno)
	}
}

func (c *Conn) checkRead() error {
	if c.closed.Load() {
		return ErrClosed
	}
	if !c.readable {
		return ErrNotReadable
	}
	return nil
}

// readMessage reads one message. When dst is large enough the payload is
// read into it; otherwise into a new slice. Called with rmu held.
func (c *Conn) readMessage(dst []byte) ([]byte, error) {
	if err := c.checkRead(); err != nil {
		return nil, err
	}
	if c.readDeadlinePassed() {
		// Even with a message buffered, as net.Conn's Read does.
		return nil, os.ErrDeadlineExceeded
	}
	if c.pipe != nil {
		if pr := c.pipe.ring.Load(); pr != nil {
			return c.readPipe(pr, dst)
		}
	}
	if c.pend.active {
		return c.resumeMessage(dst)
	}
	for {
		msg, special, err := c.readFrame(dst)
		switch special {
		case 0:
			return msg, err
		case frameSwitch:
			// The other end of a Pipe made here got its rings, which
			// are this end's too (see ringFor), and its sender moved
			// to them. No other process holds this end: it would have
			// the rings.
			pr, err := c.ringFor()
			if err != nil {
				return nil, err
			}
			if pr == nil {
				return nil, fmt.Errorf("%w: a frameSwitch on a Pipe without rings", ringconn.ErrCorrupt)
			}
			pr.rmode.Store(1)
			return c.readPipe(pr, dst)
		case frameBell:
		default:
			return nil, fmt.Errorf("%w: a stray frame %d", ringconn.ErrCorrupt, special)
		}
	}
}

// readFrame reads one frame. On a Pipe end a special frame (see
// pipering.go) is returned as special, not as a message; elsewhere it is
// a bad length, as for CPython. Called with rmu held.
func (c *Conn) readFrame(dst []byte) ([]byte, int32, error) {
	var n int64
	for {
		if c.pipe != nil {
			if sp := specialFrame(c.rbuf[c.rpos:c.rend]); sp != 0 {
				c.consume(4)
				return nil, sp, nil
			}
		}
		l, hdr, need, err := frame.Parse(c.rbuf[c.rpos:c.rend])
		if err != nil {
			return nil, 0, err
		}
		if need == 0 {
			n = l
			c.consume(hdr)
			break
		}
		if err := c.fill(need, need); err != nil {
			if err == io.EOF && c.rend > c.rpos {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, err
		}
	}
	if c.maxLen > 0 && n > c.maxLen {
		return nil, 0, c.discardMessage(n, n, c.maxLen)
	}
	if int64(c.rend-c.rpos) >= n {
		// Whole message buffered.
		var out []byte
		if dst != nil && int64(len(dst)) >= n {
			out = dst[:n]
		} else {
			out = make([]byte, n)
		}
		copy(out, c.rbuf[c.rpos:])
		c.consume(int(n))
		return out, 0, nil
	}
	// The length is the peer's claim: memory grows as the bytes arrive
	// (see frame.Grow), so a header alone costs at most frame.FirstChunk.
	var out []byte
	if dst != nil && int64(len(dst)) >= n {
		out = dst[:n]
	} else {
		out = frame.Grow(nil, n)
	}
	got := copy(out[:cap(out)], c.rbuf[c.rpos:c.rend])
	c.consume(got)
	msg, err := c.readRest(out, int64(got), n, dst == nil || int64(len(dst)) < n)
	return msg, 0, err
}

// readRest reads the payload's bytes after out[:got] into out, growing it
// as they arrive. When the read deadline stops it, the message is kept in
// pend for the next receive; own says out is not the caller's dst (which
// is the caller's again once this returns, so is copied then).
func (c *Conn) readRest(out []byte, got, n int64, own bool) ([]byte, error) {
	for got < n {
		if got == int64(cap(out)) {
			out = frame.Grow(out[:got], n)
		}
		m, err := c.readRaw(out[got:min(int64(cap(out)), n)])
		got += int64(m)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if !own {
					out = append([]byte(nil), out[:got]...)
				}
				c.pend = pendingRead{active: true, out: out, got: got, n: n}
			} else if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return out[:n], nil
}

// resumeMessage goes on with the message a read deadline interrupted,
// into dst if it is large enough. Called with rmu held.
func (c *Conn) resumeMessage(dst []byte) ([]byte, error) {
	p := c.pend
	c.pend = pendingRead{}
	if !p.discard && c.maxLen > 0 && p.n > c.maxLen {
		// Over this receive's limit (RecvBytes's may be lower).
		p.discard, p.limit = true, c.maxLen
	}
	if p.discard {
		return nil, c.discardMessage(p.n-p.got, p.n, p.limit)
	}
	msg, err := c.readRest(p.out, p.got, p.n, true)
	if err != nil || dst == nil || int64(len(dst)) < p.n {
		return msg, err
	}
	return dst[:copy(dst, msg)], nil
}

// discardMessage skips the left payload bytes of an n-byte message over
// limit and returns ErrMessageTooLong. When the read deadline stops it,
// the skipping goes on at the next receive.
func (c *Conn) discardMessage(left, n, limit int64) error {
	for left > 0 {
		if c.rend == c.rpos {
			if err := c.fill(1, int(min(left, readBufSize))); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					c.pend = pendingRead{active: true, discard: true, limit: limit, got: n - left, n: n}
				} else if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := min(left, int64(c.rend-c.rpos))
		c.consume(int(k))
		left -= k
	}
	return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLong, n, limit)
}

func (c *Conn) consume(n int) {
	c.rpos += n
	if c.rpos == c.rend {
		c.rpos, c.rend = 0, 0
	}
	c.buffered.Store(int64(c.rend - c.rpos))
}

// fill reads until at least need bytes are buffered. A Pipe end reads
// no more than upTo (>= need) in all: the bytes after belong to whichever
// holder of the end receives next (see pipering.go).
func (c *Conn) fill(need, upTo int) error {
	if c.rbuf == nil {
		c.rbuf = make([]byte, readBufSize)
	}
	if c.rpos > 0 && len(c.rbuf)-c.rpos < need {
		copy(c.rbuf, c.rbuf[c.rpos:c.rend])
		c.rend -= c.rpos
		c.rpos = 0
	}
	end := len(c.rbuf)
	if c.pipe != nil {
		end = min(end, c.rpos+upTo)
	}
	for c.rend-c.rpos < need {
		n, err := c.readRaw(c.rbuf[c.rend:end])
		c.rend += n
		c.buffered.Store(int64(c.rend - c.rpos))
		if err != nil {
			return err
		}
	}
	return nil
}

// readRaw reads from the socket, keeping any descriptors that arrive.
// Called with rmu held.
func (c *Conn) readRaw(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r := &c.rd
	if r.fn == nil {
		// Made once: a closure per read would be allocated per read.
		r.fn = c.recvmsg
		if c.unix {
			c.oob = make([]byte, unix.CmsgSpace(maxFDs*4))
		}
	}
	r.buf, r.n, r.oobn, r.flags, r.err, r.spinUntil = b, 0, 0, 0, nil, time.Time{}
	err := c.rc.Read(r.fn)
	r.buf = nil
	if err == nil {
		err = r.err
	}
	if err != nil {
		return 0, c.mapErr(err)
	}
	if r.oobn > 0 {
		if err := c.takeFDs(c.oob[:r.oobn]); err != nil {
			return r.n, err
		}
	}
	if r.flags&unix.MSG_CTRUNC != 0 {
		return r.n, errors.New("mp: too many descriptors in one message")
	}
	if r.n == 0 {
		return 0, io.EOF
	}
	return r.n, nil
}

// rawRead is the state of the read in progress, kept in the Conn so that
// reading allocates nothing.
type rawRead struct {
	fn        func(fd uintptr) bool
	buf       []byte
	n         int
	oobn      int
	flags     int
	err       error
	spinUntil time.Time
	hdr       unix.Msghdr
	iov       unix.Iovec
}

// recvmsg is the poller callback of readRaw: it reports false to wait for
// the socket to become readable.
func (c *Conn) recvmsg(fd uintptr) bool {
	r := &c.rd
	for {
		r.iov.Base = &r.buf[0]
		r.iov.SetLen(len(r.buf))
		r.hdr = unix.Msghdr{Iov: &r.iov, Iovlen: 1}
		if len(c.oob) > 0 {
			r.hdr.Control = &c.oob[0]
			r.hdr.SetControllen(len(c.oob))
		}
		n, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.hdr)), unix.MSG_CMSG_CLOEXEC)
		switch errno {
		case 0:
			r.n, r.oobn, r.flags = int(n), int(r.hdr.Controllen), int(r.hdr.Flags)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
		default:
			r.err = errno
			return true
		}
		// Nothing yet. Spin briefly before sleeping: a reply often comes
		// within microseconds, and waking a sleeping CPU costs more than
		// that. (No runtime.Gosched here: it wakes idle threads to look
		// for work, which costs more than it saves.)
		if spinFor <= 0 {
			return false
		}
		now := time.Now()
		if r.spinUntil.IsZero() {
			r.spinUntil = now.Add(spinFor)
		} else if now.After(r.spinUntil) {
			return false
		}
	}
}

func (c *Conn) takeFDs(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
		}
		c.fds = append(c.fds, fds...)
	}
	return nil
}

func (c *Conn) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case c.closed.Load():
		return ErrClosed
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.Is(err, syscall.ECONNRESET):
		return io.EOF
	case errors.Is(err, syscall.EPIPE), err == io.ErrClosedPipe: // a socket's, or a ring's (see pipering.go)
		return fmt.Errorf("mp: peer closed: %w", io.ErrClosedPipe)
	}
	return err
}

//go:build linux

package manager

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/frame"
	"github.com/go-mp/mp/internal/ringconn"
	"golang.org/x/sys/unix"
)

// How the connection of a CPython proxy thread is served: by a thread of
// its own, on a descriptor taken out of the runtime's network poller.
//
// A Python client sends its next request some 10-20 µs after it reads a
// reply, and sleeps meanwhile in a blocking read; so does the server's
// side between requests. Served as Go clients are, through the runtime's
// poller, each request cost the server five system calls and more wake-ups
// than requests: a look (MSG_PEEK) that found nothing, epoll_pwait, a look
// again, the read, the write; a thread woken from epoll_pwait for the
// request, and again for the free space the client's read of each reply
// makes in the socket's send buffer (the runtime waits for writability
// too, edge-triggered), 1.3 context switches per request on the server,
// and the runtime's scheduler between (py_manager_dict: 28-52 µs per call
// against CPython's server's 25-48 on a busy two-CPU machine).
//
// Here the connection's goroutine, locked to its thread, takes a
// duplicate of the socket's descriptor and closes the Conn (the runtime
// then drops the descriptor from its epoll set, so that nothing wakes in
// the poller for this socket), and waits for each request in poll(2) for
// input alone: a blocking read(2) would also be woken, for nothing, by
// the reply's free space, which poll's wait filters out. A request costs
// poll, read and write, and one context switch: 19-22 µs per call on the
// same machine in the same minutes. On an idle machine, though, the
// thread asleep in poll(2) made each request wait for its CPU to wake
// (84 µs per call against 48-59 for CPython's server), while on a busy
// machine a thread polling took the CPU its client needed: the thread
// polls the socket for a while first, or sleeps at once, whichever has
// lately answered its client sooner (see pyWait). The thread is the
// connection's as long as the client is connected (CPython's server, too, has a thread
// per connection); when the connection ends, the goroutine ends locked
// and the runtime ends its thread with it.
//
// The end of the connection from the server's side (Serve ending, a
// hang-up) is shutdown(2) on the descriptor (see pySock.hangUp), which
// ends the thread's poll, read or write; only the thread closes the
// descriptor, once it is done with it, so that its number is never
// reused under it.

// pyMaxThreads caps the connections a Server serves on threads of their
// own: past it, connections are served through the runtime's poller, as
// those of Go clients are, so that clients cannot make the server reach
// the runtime's limit on threads (10 000, past which it dies). A var for
// the tests.
var pyMaxThreads int64 = 1000

// A pySock is the socket of a Python proxy thread's connection once its
// thread has taken it (see takePySock).
type pySock struct {
	mu    sync.Mutex // guards fd against hangUp
	fd    int        // -1 once closed
	hung  bool       // hangUp was called
	wmu   sync.Mutex // one reply at a time (a wait's reply comes from its goroutine)
	wbuf  []byte
	limit int64  // the longest request accepted, 0 for any
	buf   []byte // bytes received: buf[pos:end] are not consumed yet
	pos   int
	end   int

	poller ringconn.Poller // how read polls, when it does
	wait   pyWait          // whether read polls before it sleeps
}

// takePySock moves the socket of c, whose goroutine serves a Python proxy
// thread and has nothing buffered in its Conn, onto a descriptor of its
// own, read by the calling goroutine, which it locks to its thread for
// good (see above). It fails if the connection has been closed meanwhile.
func (l *link) takePySock() (*pySock, error) {
	runtime.LockOSThread() // until the goroutine ends: its thread ends with it
	if h := testHookPyThread.Load(); h != nil {
		(*h)(unix.Gettid())
	}
	fd, err := l.sock.Fileno()
	if err != nil {
		return nil, err
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("manager: dup of a Python client's socket: %w", err)
	}
	p := &pySock{fd: nfd, limit: l.limit, buf: make([]byte, 4<<10)}
	l.pmu.Lock()
	if l.closed {
		l.pmu.Unlock()
		unix.Close(nfd)
		return nil, mp.ErrClosed
	}
	l.py.Store(p)
	l.pmu.Unlock()
	// The Conn's descriptor leaves the runtime's epoll set as it closes;
	// the socket lives on in nfd. The file description they share was
	// non-blocking for the runtime: blocking now, so that a write waits
	// in the kernel (poll(2) tells when to read).
	l.sock.Close()
	if err := unix.SetNonblock(nfd, false); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// hangUp ends the connection: the thread's poll, read or write returns.
func (p *pySock) hangUp() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = true
	if p.fd >= 0 {
		unix.Shutdown(p.fd, unix.SHUT_RDWR)
	}
}

// close closes the descriptor; called by the thread once it is done with
// it (and any reply of a wait has been sent: see sconn.finish).
func (p *pySock) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// send sends one message.
func (p *pySock) send(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var w []byte
	if len(b) <= 64<<10 {
		// One write(2) for the header and a short message.
		p.wbuf = append(frame.AppendHeader(p.wbuf[:0], len(b)), b...)
		w = p.wbuf
		if cap(p.wbuf) > 64<<10+frame.MaxHeader {
			p.wbuf = nil
		}
	} else {
		if err := p.write(frame.AppendHeader(p.wbuf[:0], len(b))); err != nil {
			return err
		}
		w = b
	}
	return p.write(w)
}

// sendPair sends reply m (see sconn.pySend), encoded in place after
// room for its header (see appendPyReply).
func (p *pySock) sendPair(m pyMsg) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if cap(p.wbuf) < frame.MaxHeader {
		p.wbuf = make([]byte, 0, 256)
	}
	b := appendPyReply(p.wbuf[:frame.MaxHeader], m)
	var hb [frame.MaxHeader]byte
	h := frame.AppendHeader(hb[:0], len(b)-frame.MaxHeader)
	start := frame.MaxHeader - len(h)
	copy(b[start:], h)
	p.wbuf = b
	if cap(p.wbuf) > 64<<10+frame.MaxHeader {
		p.wbuf = nil
	}
	return p.write(b[start:])
}

func (p *pySock) write(w []byte) error {
	for len(w) > 0 {
		// MSG_NOSIGNAL: a client gone, or a hang-up, is EPIPE, not a
		// SIGPIPE for a program that asked for them (signal.Notify).
		// First without waiting, in a raw system call (a reply mostly
		// fits in the socket's buffer: the runtime need not know); only
		// a write that must wait is one the runtime is told of.
		fd := p.fdNow()
		n, err := pyIO(unix.SYS_SENDTO, fd, w, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			n, err = unix.SendmsgN(fd, w, nil, nil, unix.MSG_NOSIGNAL)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return p.mapErr(err)
		}
		w = w[n:]
	}
	return nil
}

// fdNow returns the descriptor, -1 once closed (a system call on it then
// fails with EBADF).
func (p *pySock) fdNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fd
}

func (p *pySock) mapErr(err error) error {
	p.mu.Lock()
	hung := p.hung
	p.mu.Unlock()
	if hung {
		return mp.ErrClosed
	}
	return err
}

// recv receives one message. It stays valid until the next recv. A
// message longer than limit is read and thrown away: the error then
// matches mp.ErrMessageTooLong, and the connection stays in step.
func (p *pySock) recv() ([]byte, error) {
	for {
		n, hdr, need, err := frame.Parse(p.buf[p.pos:p.end])
		if err != nil {
			return nil, err
		}
		if need == 0 {
			switch {
			case p.limit > 0 && n > p.limit:
				p.pos += hdr
				return nil, p.discard(n)
			case int64(p.end-p.pos-hdr) >= n:
				msg := p.buf[p.pos+hdr : p.pos+hdr+int(n)]
				p.pos += hdr + int(n)
				return msg, nil
			case n > int64(len(p.buf)-hdr): // not hdr+n: n is the client's, up to 2^63-1
				p.pos += hdr
				return p.recvLong(n)
			}
		}
		if err := p.fill(); err != nil {
			if err == io.EOF && p.end > p.pos {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// recvLong receives an n-byte message that does not fit in the buffer,
// its first bytes in it: into memory that grows as the bytes arrive (see
// frame.Grow), as n is the client's claim.
func (p *pySock) recvLong(n int64) ([]byte, error) {
	out := frame.Grow(nil, n)
	got := int64(copy(out[:cap(out)], p.buf[p.pos:p.end]))
	p.pos, p.end = 0, 0
	for got < n {
		if got == int64(cap(out)) {
			out = frame.Grow(out[:got], n)
		}
		m, err := p.read(out[got:min(int64(cap(out)), n)])
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		got += int64(m)
	}
	return out[:n], nil
}

// discard throws away an n-byte message over the limit, its first bytes
// in the buffer.
func (p *pySock) discard(n int64) error {
	for left := n; left > 0; {
		if p.pos == p.end {
			if err := p.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := min(left, int64(p.end-p.pos))
		p.pos += int(k)
		left -= k
	}
	return fmt.Errorf("%w: %d bytes, limit %d", mp.ErrMessageTooLong, n, p.limit)
}

// fill reads more bytes into the buffer, moving those not consumed to its
// start first.
func (p *pySock) fill() error {
	if p.pos > 0 {
		p.end = copy(p.buf, p.buf[p.pos:p.end])
		p.pos = 0
	}
	m, err := p.read(p.buf[p.end:])
	p.end += m
	return err
}

// read waits until the socket has input (or an end), then reads it into
// b; io.EOF at the end of the stream. It either polls the socket for a
// while before it sleeps in poll(2) (ringconn.Poller: while polling
// pays, in at most GOMAXPROCS-1 goroutines of the process at once, never
// on one CPU), or sleeps at once: whichever has lately ended the waits of
// this connection sooner (see pyWait).
func (p *pySock) read(b []byte) (n int, err error) {
	var until time.Time
	polling := false
	if p.wait.start(pyWaitClock()) {
		until, polling = p.poller.Start()
	}
	p.wait.began(polling)
	defer func() {
		if polling {
			p.poller.End(false)
		}
	}()
	first := true
	for {
		fd := p.fdNow()
		if fd < 0 {
			return 0, mp.ErrClosed // poll(2) would ignore it, and wait for ever
		}
		if polling {
			n, ok, err := p.tryRead(fd, b)
			if ok {
				polling = false
				if first {
					p.poller.EndQuick()
				} else {
					p.poller.End(true)
					if testHookPyCaught != nil {
						testHookPyCaught()
					}
				}
				return n, err
			}
			first = false
			if time.Now().Before(until) {
				if testHookPyPolling != nil {
					testHookPyPolling() // a look follows, whatever the time
				}
				continue
			}
			polling = false
			p.poller.End(false)
		}
		// Asleep at once, without a look first: poll(2) returns at once
		// if the request is there, and the look would cost a system call
		// more when it is not, as it mostly is not.
		if testHookPySleep != nil {
			testHookPySleep()
		}
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd[:], -1); err == unix.EINTR {
			continue
		} else if err != nil {
			return 0, p.mapErr(err)
		}
		if pfd[0].Revents&unix.POLLNVAL != 0 {
			return 0, mp.ErrClosed
		}
		if n, ok, err := p.tryRead(fd, b); ok {
			return n, err
		}
	}
}

// pyWaitClock reads the clock that times the waits of read (a var for
// the tests).
var pyWaitClock = time.Now

// A pyWait chooses how a Python connection's thread waits for its next
// request: by polling the socket first (then the Poller decides whether,
// and for how long), or by sleeping in poll(2) at once. Neither is best
// everywhere. A thread asleep is woken by the request, at once if it
// shares a CPU with its client (the kernel's wake-up of a thread that
// the waker is about to wait for); but woken on a CPU gone idle, it waits
// for that CPU to wake, tens of microseconds on a virtual machine
// (py_manager_dict: 84 µs per call sleeping against 33 polling, on an
// idle two-CPU machine). A thread that polls takes a CPU for it: on a
// busy machine, often the CPU its client needs to make the request
// (27-37 µs per call polling against 19-27 sleeping, on the same machine
// busy, and 17-25 for a C server that sleeps and does nothing else).
// So the waits are timed, each with the request it waited for: from its
// start to the start of the next (which includes the reply, whose
// sending wakes the client, at once or not depending on where the two
// threads run), and counted for the way it waited. The next waits go the
// way whose recent waits were shorter on average, and now and then a few
// go the other way (a try), so that its average follows the machine as
// it changes. Only the second half of a try counts: a thread that polled
// runs on a CPU of its own, which its first waits asleep keep (the kernel
// wakes a thread where it ran) until it joins its client's, if it does.
type pyWait struct {
	avg    [2]time.Duration // of the waits that polled ([0]) and that slept ([1])
	known  [2]bool          // avg[i] has a first wait
	gap    uint32           // waits between two tries
	left   uint32           // waits before the next try
	try    int              // waits of the try under way still to come, 0 if none
	tryPol bool             // the try polls
	trySum time.Duration    // of the try's waits that count
	tryN   int

	last   time.Time // start of the wait under way, zero before the first
	polled bool      // it polled
}

const (
	// A try costs the difference between the two ways, up to tens of
	// microseconds a wait (poll 70-77 µs, sleep 14-20, on a busy
	// machine): tries start pyWaitTryMin waits apart after the best
	// way changed, and each try that leaves it the best doubles the gap
	// to the next, up to pyWaitTryMax (then under 0.5 µs per request).
	pyWaitTryMin = 64
	pyWaitTryMax = 1024
	// pyWaitTryLen is the waits of a try, the second half of which count.
	pyWaitTryLen = 8
	// pyWaitCap bounds a wait counted: beyond it the client was busy,
	// or the request was one that waits, and either way ends asleep.
	pyWaitCap = 4 * ringconn.DefaultSpin
	// A wait weighs 1/8 in its way's average (1 >> pyWaitShift), a try
	// 1/2 (1 >> pyWaitTryShift): tries are rare, and three of them move
	// a stale average most of the way to the present.
	pyWaitShift    = 3
	pyWaitTryShift = 1
)

// start ends the wait under way (if any) at now, and reports whether the
// next wait, which starts now, polls.
func (w *pyWait) start(now time.Time) bool {
	if !w.last.IsZero() {
		w.record(w.polled, now.Sub(w.last))
	}
	w.last = now
	return w.poll()
}

// began records whether the wait that started polled (the Poller may
// have refused).
func (w *pyWait) began(polled bool) { w.polled = polled }

// best reports whether polling is the best way (ties go to polling).
func (w *pyWait) best() bool { return w.avg[0] <= w.avg[1] }

// poll reports whether the next wait polls.
func (w *pyWait) poll() bool {
	switch {
	case !w.known[0]:
		return true
	case !w.known[1]:
		return false
	}
	if w.gap == 0 {
		w.gap, w.left = pyWaitTryMin, pyWaitTryMin
	}
	if w.try > 0 {
		return w.tryPol
	}
	if w.left == 0 {
		w.try, w.tryPol, w.trySum, w.tryN = pyWaitTryLen, !w.best(), 0, 0
		return w.tryPol
	}
	w.left--
	return w.best()
}

// record counts a wait of d that polled or slept.
func (w *pyWait) record(polled bool, d time.Duration) {
	i := 1
	if polled {
		i = 0
	}
	d = min(d, pyWaitCap)
	if !w.known[i] {
		w.avg[i], w.known[i] = d, true
		return
	}
	if w.try == 0 {
		w.avg[i] += (d - w.avg[i]) >> pyWaitShift
		return
	}
	w.try--
	switch {
	case polled != w.tryPol:
		// A wait of a try of polling that the Poller refused (polling
		// has not been paying, or other goroutines poll): a wait like
		// the others.
		w.avg[i] += (d - w.avg[i]) >> pyWaitShift
	case w.try < pyWaitTryLen/2:
		w.trySum += d
		w.tryN++
	}
	if w.try > 0 {
		return
	}
	w.left = w.gap
	if w.tryN == 0 {
		return
	}
	j := 1
	if w.tryPol {
		j = 0
	}
	w.avg[j] += (w.trySum/time.Duration(w.tryN) - w.avg[j]) >> pyWaitTryShift
	if w.best() == w.tryPol {
		w.gap = pyWaitTryMin // the try found the better way
	} else {
		w.gap = min(2*w.gap, pyWaitTryMax)
	}
	w.left = w.gap
}

// Test hooks, called by read: as a poll finds nothing, as input ends a
// poll, and before a sleep in poll(2); and by tryRead, as it looks.
var testHookPyPolling, testHookPyCaught, testHookPySleep, testHookPyLook func()

// testHookPyThread, if a test sets it, is given the thread id of each
// thread that takes a Python connection's socket.
var testHookPyThread atomic.Pointer[func(tid int)]

// tryRead reads what fd has into b without waiting: ok is false when it
// has nothing yet.
func (p *pySock) tryRead(fd int, b []byte) (n int, ok bool, err error) {
	if testHookPyLook != nil {
		testHookPyLook()
	}
	// In a raw system call: it never waits.
	n, err = pyIO(unix.SYS_RECVFROM, fd, b, unix.MSG_DONTWAIT)
	switch {
	case err == unix.EINTR || err == unix.EAGAIN:
		return 0, false, nil
	case err != nil:
		return 0, true, p.mapErr(err)
	case n == 0:
		if err := p.mapErr(nil); err != nil {
			return 0, true, err
		}
		return 0, true, io.EOF
	}
	return n, true, nil
}

// pyIO runs sendto or recvfrom (call) on fd with b and flags, which
// include MSG_DONTWAIT: it never waits, so it need not tell the runtime
// (each of its system calls that does costs a scheduler round trip).
func pyIO(call uintptr, fd int, b []byte, flags int) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, errno := unix.RawSyscall6(call, uintptr(fd), uintptr(p), uintptr(len(b)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

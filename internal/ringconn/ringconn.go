//go:build linux

// Package ringconn carries messages between two processes on one machine
// through two byte rings in shared memory, with a socket beside them.
//
// A message sent over a socket costs a system call on each side, and a
// few microseconds each on a virtual machine; through shared memory it
// costs two copies. The socket stays, for what memory cannot do: a reader
// that has polled its ring for a while with nothing coming sleeps on the
// socket, and the writer that next fills the ring sends it an empty
// message to wake it (a doorbell); and the socket's end tells each side
// that the other has gone, even if it was killed.
//
// Each ring is a byte stream written by one side and read by the other,
// messages framed by an 8-byte length, so a message may be larger than the
// ring: it is then copied in pieces as the reader frees room.
//
// The peer can write anything into the shared memory, by mistake or on
// purpose, so every word read from it is input: an index that no writer
// or reader following the protocol could leave there fails the operation
// with ErrCorrupt (the caller then closes the connection), and a length
// is believed only as far as the bytes that actually arrive (see
// RecvBytesInto). Nothing the peer writes can make this side panic, and
// a peer that closes or dies cannot make it wait for ever.
package ringconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/connerr"
	"github.com/go-mp/mp/internal/frame"
	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/pause"
	"github.com/go-mp/mp/internal/shm"
	"golang.org/x/sys/unix"
)

// Layout of one ring: a header of cache-line-separated words, then data.
const (
	offHead     = 0   // uint64: bytes written so far (by the writer)
	offTail     = 64  // uint64: bytes read so far (by the reader)
	offSleeping = 128 // uint32: the reader sleeps: 1 on the socket, 2 on this word (a futex)
	offClosed   = 132 // uint32: 1 once the writer has closed
	offOwner    = 136 // uint64: the reader's process (shm.Self), for the writer's checks
	headerSize  = 192
)

// RingSize is the data size of each ring; MemSize is the shared memory a
// Conn needs (two rings), which the two sides must share.
const (
	RingSize = 64 << 10
	MemSize  = 2 * (headerSize + RingSize)
)

// DefaultSpin is how long a reader polls its empty ring before it sleeps
// (when polling pays, see spinner), and a writer polls a full one before
// it naps. Polling never changes what is received, a sleeping reader is
// woken by the next message: it only trades CPU for a sleep and a wake.
const DefaultSpin = 50 * time.Microsecond

// How a reader sleeps, in its ring's sleeping word.
const (
	sleepSocket = 1 // the writer rings with an empty message on the socket
	sleepFutex  = 2 // the writer wakes the futex on the word
)

// futexHold is how long one receive sleeps on a futex at most, holding
// its P (see SetFutexSleep); then it sleeps on the socket. A wait that
// long saves little by a quick wake, and the P is the process's; and a
// writer that dies cannot wake a futex, only its socket's end tells.
const futexHold = 10 * time.Millisecond

// futexSleepers counts the receives of this process sleeping on a futex
// (see SetFutexSleep).
var futexSleepers atomic.Int32

// ErrCorrupt is returned when the peer has left the shared memory in a
// state that no peer following the protocol can produce: an index moved
// backwards or past the other side's, or a doorbell with content. The
// peer is broken or hostile; close the connection.
var ErrCorrupt = errors.New("ringconn: the peer corrupted the shared ring")

// maxMessage is the limit of a reader that has not set one (see SetLimit).
const maxMessage = 1 << 30

type ring struct {
	head, tail *atomic.Uint64
	sleeping   *atomic.Uint32
	closed     *atomic.Uint32
	owner      *atomic.Uint64
	data       []byte
}

func newRing(mem []byte) ring {
	p := unsafe.Pointer(&mem[0])
	return ring{
		head:     (*atomic.Uint64)(unsafe.Add(p, offHead)),
		tail:     (*atomic.Uint64)(unsafe.Add(p, offTail)),
		sleeping: (*atomic.Uint32)(unsafe.Add(p, offSleeping)),
		closed:   (*atomic.Uint32)(unsafe.Add(p, offClosed)),
		owner:    (*atomic.Uint64)(unsafe.Add(p, offOwner)),
		data:     mem[headerSize : headerSize+RingSize],
	}
}

// Socket is what a Conn needs of the connection beside its rings (an
// *mp.Conn has these methods): empty messages as doorbells, a wait for
// one, the descriptor to see the peer's end without reading, and Close.
// It is an interface so that this package sits below the root package,
// which carries its pool's work over rings too.
type Socket interface {
	// SendBytes sends a message; a Conn sends only empty ones.
	SendBytes(b []byte) error
	// RecvBytes receives a message no longer than maxLength; a longer
	// one fails with an error matching connerr.ErrMessageTooLong, and
	// the peer's end with io.EOF.
	RecvBytes(maxLength int) ([]byte, error)
	// Poll waits up to timeout (< 0: without limit) for a message or
	// the end; Close ends the wait.
	Poll(timeout time.Duration) (bool, error)
	// Fileno returns the socket's descriptor, an error once closed.
	Fileno() (int, error)
	// Close closes the socket, waking a Poll in progress.
	Close() error
}

// Conn is one side of a ring connection. One goroutine at a time receives;
// sends from several goroutines are serialised.
type Conn struct {
	sock       Socket
	keep       io.Closer // what maps the memory, closed with the Conn
	in, out    ring
	closed     atomic.Bool
	futexSleep atomic.Bool      // see SetFutexSleep
	limit      atomic.Int64     // see SetLimit
	shared     bool             // see NewShared
	onEmpty    func(end uint64) // see SetEmptyHook
	wdeadline  atomic.Int64     // see SetWriteDeadline: UnixNano, 0 for none
	rdeadline  atomic.Int64     // see SetReadDeadline: UnixNano, 0 for none
	futexHold  time.Duration    // futexHold; a test lengthens it to see a futex sleeper woken

	rmu          sync.Mutex
	rhead, rtail uint64  // under rmu: the in ring's head as last seen, and its tail as read
	spinner      spinner // under rmu: whether polling pays, see waitData

	wmu          sync.Mutex
	whead, wtail uint64   // under wmu: the out ring's head as written, and its tail as last seen
	bhdrs        []byte   // under wmu: SendBatch's lengths, kept for the next
	bparts       [][]byte // under wmu: SendBatch's parts, kept for the next
}

// New makes one side of a ring connection over mem (MemSize bytes of
// memory shared with the peer, zeroed before either side starts), next to
// sock, a connection to the peer. The side that made the memory passes
// first true, the other false. keep, if not nil, is closed with the Conn.
func New(sock Socket, mem []byte, first bool, keep io.Closer) (*Conn, error) {
	c, err := newConn(sock, mem, first)
	if err != nil {
		return nil, err
	}
	c.keep = keep
	c.in.owner.Store(shm.Self())
	return c, nil
}

// newConn is what New and NewShared share.
func newConn(sock Socket, mem []byte, first bool) (*Conn, error) {
	if len(mem) < MemSize {
		return nil, fmt.Errorf("ringconn: %d bytes of memory, need %d", len(mem), MemSize)
	}
	if uintptr(unsafe.Pointer(&mem[0]))%64 != 0 {
		return nil, errors.New("ringconn: memory not aligned")
	}
	a, b := newRing(mem[:headerSize+RingSize]), newRing(mem[headerSize+RingSize:MemSize])
	c := &Conn{sock: sock, in: a, out: b}
	if !first {
		c.in, c.out = b, a
	}
	c.spinner = newSpinner()
	c.futexHold = futexHold
	return c, nil
}

// NewShared makes one side of a ring connection, as New does, for a side
// that several processes may hold at once (an mp.Pipe end passed to
// children). The caller makes the operations of one side's holders take
// turns: at most one process sends on a side at a time, and at most one
// receives (a lock in the shared memory, say). Then:
//
//   - each send and each receive starts from the positions in the shared
//     memory, not from this process's copy of them, since another holder
//     may have moved them (they are checked as the peer's are);
//   - a message is published whole: a send waits for room for all of it
//     before it copies anything, so a receive never waits in the middle
//     of a message, and a holder that dies or stops in a send leaves
//     nothing of its message behind. A message must therefore fit in the
//     ring: longer ones fail;
//   - Close does not mark the ring closed, since the side's other holders
//     may still send: the peer learns the end from the socket's end, which
//     comes once every holder has closed its copy of the socket;
//   - the owner word is not used: the reader may be any of the holders.
//
// The memory is not zeroed here: the side that made it zeroed it before
// either side started.
func NewShared(sock Socket, mem []byte, first bool) (*Conn, error) {
	c, err := newConn(sock, mem, first)
	if err != nil {
		return nil, err
	}
	c.shared = true
	return c, nil
}

// SetEmptyHook has f called, on a side made by NewShared, each time a
// receive takes an empty message, with the position in the ring where
// the message ends, before the tail moves there: a caller that gives
// empty messages a meaning of its own (an mp.Pipe's marker) records that
// it took one first, so that a holder that dies in between leaves the
// next one able to tell whether the tail moved (see Tail and SkipTo).
// Set it before the side is used.
func (c *Conn) SetEmptyHook(f func(end uint64)) { c.onEmpty = f }

// Tail returns the in ring's tail as the shared memory holds it.
func (c *Conn) Tail() uint64 { return c.in.tail.Load() }

// SkipTo moves the in ring's tail forward to end, on a side made by
// NewShared, for a caller that knows a message up to end was taken (see
// SetEmptyHook). An end behind the tail or past the head is refused with
// ErrCorrupt.
func (c *Conn) SkipTo(end uint64) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return connerr.ErrClosed
	}
	tail, head := c.in.tail.Load(), c.in.head.Load()
	if end-tail > head-tail || head-tail > RingSize {
		return fmt.Errorf("%w: a skip to %d, the tail is %d, the head %d", ErrCorrupt, end, tail, head)
	}
	c.in.tail.Store(end)
	return nil
}

// MaxShared is the longest message a side made by NewShared sends.
const MaxShared = RingSize - 8

// SetWriteDeadline sets the time after which a send waiting for room in
// the ring gives up with an error matching os.ErrDeadlineExceeded; the
// zero time removes it. On a side made by NewShared such a send has sent
// nothing; on one made by New, its message may be partly out (the
// connection is then out of step, close it).
func (c *Conn) SetWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.wdeadline.Store(0)
		return
	}
	c.wdeadline.Store(max(t.UnixNano(), 1))
}

// SetReadDeadline tells a receive that sleeps on a futex (see
// SetFutexSleep) to move to the socket by t, whose read deadline the
// caller has set to t too: the socket's wait then ends at the deadline
// (with an error matching os.ErrDeadlineExceeded, see Socket). The zero
// time removes it.
func (c *Conn) SetReadDeadline(t time.Time) {
	if t.IsZero() {
		c.rdeadline.Store(0)
		return
	}
	c.rdeadline.Store(max(t.UnixNano(), 1))
	wakeFutex(c.in.sleeping) // a sleeper looks at the new deadline
}

// Ready reports whether the in ring holds data no receive has taken: a
// receive would not wait for a message to begin. It takes no lock and
// reads only the shared memory, so it sees what another holder of the
// side left too (see NewShared).
func (c *Conn) Ready() bool {
	return c.in.head.Load() != c.in.tail.Load()
}

// Arm asks the writer to ring the socket's doorbell with its next
// message, for a caller about to wait on the socket's descriptor itself
// (mp.Wait), and reports whether data came meanwhile (then no doorbell
// may come: do not wait). A doorbell that no receive takes stays in the
// socket; the next receive that sleeps takes it, harmlessly.
func (c *Conn) Arm() bool {
	c.in.sleeping.Swap(sleepSocket) // a full fence before the look at head: see publish
	return c.Ready() || c.in.closed.Load() == 1
}

// Close ends the connection: the peer's reads see the end once they have
// read what was sent before.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if !c.shared {
		c.out.closed.Store(1)
	}
	// Wake our reader and the peer's if they sleep on a futex; on the
	// socket, its end wakes them.
	wakeFutex(c.out.sleeping)
	wakeFutex(c.in.sleeping)
	err := c.sock.Close()
	c.wmu.Lock() // let a send in progress finish with the memory
	c.rmu.Lock()
	if c.keep != nil {
		c.keep.Close()
	}
	c.rmu.Unlock()
	c.wmu.Unlock()
	return err
}

// SendBytes sends b as one message.
func (c *Conn) SendBytes(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return connerr.ErrClosed
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(b)))
	if c.shared {
		return c.writeWhole(hdr[:], b)
	}
	return c.write(hdr[:], b)
}

// writeWhole is write for a side made by NewShared: it starts from the
// positions in the shared memory, waits for room for the whole message,
// then copies and publishes it at once. Called with wmu held.
func (c *Conn) writeWhole(hdr, b []byte) error {
	if len(b) > MaxShared {
		return fmt.Errorf("ringconn: a %d-byte message on a shared ring, which takes at most %d", len(b), MaxShared)
	}
	if head := c.out.head.Load(); head != c.whead {
		// Another holder sent since this one did (the head only
		// grows): start from the shared positions. Otherwise the tail
		// this holder last saw is still a bound, and reading the
		// tail, whose cache line is the reader's, would cost a miss.
		tail := c.out.tail.Load()
		if head-tail > RingSize {
			return fmt.Errorf("%w: the head is %d, the tail %d, the ring %d bytes", ErrCorrupt, head, tail, RingSize)
		}
		c.whead, c.wtail = head, tail
	}
	// The room left by the tail last seen is a lower bound on the
	// room there is: only when it is too small is the reader's tail
	// looked at (and checked), as write does.
	if need := len(hdr) + len(b); RingSize-int(c.whead-c.wtail) < need {
		if err := c.waitRoom(need); err != nil {
			return err
		}
	}
	return c.write(hdr, b)
}

// SendBatch sends each of msgs as one message, as SendBytes would one
// after the other, but publishes them together where they fit in the ring:
// the reader then takes them all with one look at the head, and is woken
// at most once.
func (c *Conn) SendBatch(msgs [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return connerr.ErrClosed
	}
	hdrs := slices.Grow(c.bhdrs[:0], 8*len(msgs))[:8*len(msgs)]
	parts := c.bparts[:0]
	for i, m := range msgs {
		h := hdrs[8*i : 8*i+8]
		binary.LittleEndian.PutUint64(h, uint64(len(m)))
		parts = append(parts, h, m)
	}
	err := c.write(parts...)
	clear(parts) // the messages are the caller's
	c.bhdrs, c.bparts = hdrs, parts[:0]
	return err
}

// Buffered reports whether a message, or part of one, waits in the in
// ring: a receive would not wait for it to begin. After Close it reports
// false: the memory may be gone (a reader that asks after another
// goroutine closed the Conn faulted on it).
func (c *Conn) Buffered() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return false
	}
	return c.rhead != c.rtail || c.in.head.Load() != c.rtail
}

// write copies the parts into the out ring, one after the other. It
// publishes what it has copied (one store, which the reader's polling
// pays for in a cache miss) only at the end, or when it must wait for
// room. Called with wmu held.
func (c *Conn) write(parts ...[]byte) error {
	r := &c.out
	head := c.whead
	for _, b := range parts {
		for len(b) > 0 {
			room := RingSize - int(head-c.wtail)
			if room == 0 {
				// The reader's tail, read only when our last look at it
				// leaves no room: its cache line is the reader's.
				if err := c.loadTail(); err != nil {
					return err
				}
				if room = RingSize - int(head-c.wtail); room == 0 {
					c.publish(head)
					if err := c.waitRoom(1); err != nil {
						return err
					}
					continue
				}
			}
			n := min(room, len(b))
			at := int(head % RingSize)
			k := copy(r.data[at:], b[:n])
			copy(r.data, b[k:n])
			head += uint64(n)
			b = b[n:]
		}
	}
	c.publish(head)
	return nil
}

// publish makes the bytes up to head readable, and wakes the reader if
// it sleeps.
func (c *Conn) publish(head uint64) {
	if head == c.whead {
		return
	}
	c.whead = head
	// Swap, not Store: the head's store and ring's look at the reader's
	// flag must not be reordered (the reader does the same in the other
	// order, see waitData). Store is an exchange on amd64, but under the
	// race detector it is not, and readers slept through messages.
	c.out.head.Swap(head)
	c.ring()
}

// ring wakes the reader of the out ring if it sleeps.
func (c *Conn) ring() {
	r := &c.out
	how := r.sleeping.Load()
	switch {
	case how == 0 || !r.sleeping.CompareAndSwap(how, 0):
	case how == sleepFutex:
		futex.Wake(r.sleeping, 1)
	default:
		c.sock.SendBytes(nil) // a failure is the peer's end, which it sees
	}
}

// wakeFutex wakes a reader sleeping on the futex word w, if one does.
func wakeFutex(w *atomic.Uint32) {
	if w.Load() == sleepFutex && w.CompareAndSwap(sleepFutex, 0) {
		futex.Wake(w, 1)
	}
}

// loadTail reads the out ring's tail, which the reader writes, into
// wtail. A reader following the protocol only moves it forward, and never
// past the head published. Called with wmu held.
func (c *Conn) loadTail() error {
	t := c.out.tail.Load()
	if t-c.wtail > c.whead-c.wtail {
		return fmt.Errorf("%w: the reader's tail moved from %d to %d, the head is %d", ErrCorrupt, c.wtail, t, c.whead)
	}
	c.wtail = t
	return nil
}

// waitRoom waits until the out ring has room for need bytes. It
// polls: the reader is busy reading (it sleeps only on an empty ring),
// unless it has closed or died, which its closed flag (in the ring it
// writes), the owner word and, beyond what the peer can write, the end
// of its socket tell. Called with wmu held, the head published.
func (c *Conn) waitRoom(need int) error {
	r := &c.out
	var start, lastCheck time.Time // read from the clock once a look finds no room
	nap := 10 * time.Microsecond
	for i := 0; ; i++ {
		if err := c.loadTail(); err != nil {
			return err
		}
		if RingSize-int(c.whead-c.wtail) >= need {
			return nil
		}
		if c.closed.Load() {
			return connerr.ErrClosed
		}
		if !c.shared && c.in.closed.Load() == 1 {
			return io.ErrClosedPipe // the reader closed: nothing will free room
		}
		if start.IsZero() {
			start = time.Now()
			lastCheck = start
		}
		if i%16 == 15 {
			now := time.Now()
			if d := c.wdeadline.Load(); d != 0 && now.UnixNano() >= d {
				return os.ErrDeadlineExceeded
			}
			if now.Sub(start) < DefaultSpin {
				runtime.Gosched()
				continue
			}
			if now.Sub(lastCheck) > 10*time.Millisecond {
				lastCheck = now
				if owner := r.owner.Load(); (owner != 0 && !shm.Alive(owner)) || c.peerHungUp() {
					return io.ErrClosedPipe
				}
			}
			time.Sleep(nap)
			nap = min(2*nap, time.Millisecond)
		}
	}
}

// peerHungUp reports whether the peer's end of the socket is closed, as
// it is once the peer has closed or died, whatever it left in the
// memory. It looks without reading: the doorbells are the reader's.
func (c *Conn) peerHungUp() bool {
	fd, err := c.sock.Fileno()
	if err != nil {
		return true // our own socket is closed
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(pfd, 0)
	gone := int16(unix.POLLRDHUP | unix.POLLHUP | unix.POLLERR)
	if c.shared {
		// A shared side's socket may be shut for reading on purpose (a
		// one-way mp.Pipe), which POLLRDHUP reports too; the peer's
		// close shuts both ways.
		gone = unix.POLLHUP | unix.POLLERR
	}
	return err == nil && n > 0 && pfd[0].Revents&gone != 0
}

// SetLimit caps the length of the messages received: a longer one is
// read and thrown away, and its receive fails with an error matching
// connerr.ErrMessageTooLong; the connection stays usable. 0 means the
// package's own cap, 1 GiB.
func (c *Conn) SetLimit(n int64) { c.limit.Store(n) }

// SetFutexSleep says whether a receive that sleeps does so on a futex in
// the shared memory (on) or on the socket (off, the default). A futex
// costs one system call on each side, against four or five for the
// socket's doorbell and the runtime's network poller (1 client of a
// manager on a loaded 2-core machine: 40-56 -> 170-190 k ops/s), but the
// sleeping receive holds its thread and its P (see
// futex.WaitHoldingP): it suits a side where one goroutine or a few
// wait, as a manager's client does, not a server with a goroutine per
// connection. At most GOMAXPROCS-1 receives of a process sleep on a
// futex at once, so that one P stays for the other goroutines (the one
// that cancels a wait, say); the others sleep on the socket, as all do
// on one core. And a receive sleeps on the futex for futexHold at most,
// then on the socket: a long wait (a lock held for seconds) does not
// keep a P from the process, and a writer that dies without a word,
// which cannot wake a futex, is seen gone by the socket's end.
func (c *Conn) SetFutexSleep(on bool) { c.futexSleep.Store(on) }

// RecvBytesInto receives one message into buf[offset:] and returns its
// length, as mp.Conn.RecvBytesInto does: a message that does not fit comes
// whole in a *connerr.BufferTooShortError (mp.BufferTooShortError), in memory that grows as its bytes
// arrive (a length alone allocates at most frame.FirstChunk). A message
// over the limit (see SetLimit) is skipped. At the peer's end it returns
// io.EOF; on memory the peer corrupted, an error matching ErrCorrupt.
func (c *Conn) RecvBytesInto(buf []byte, offset int) (int, error) {
	if offset < 0 || offset > len(buf) {
		return 0, fmt.Errorf("ringconn: offset %d out of range for a %d-byte buffer", offset, len(buf))
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, connerr.ErrClosed
	}
	if c.shared {
		// Another holder may have read since (see NewShared); the
		// tail is checked against the head as it is read (see avail).
		c.rtail = c.in.tail.Load()
		c.rhead = c.rtail
	}
	var hdr [8]byte
	if err := c.read(hdr[:], true); err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint64(hdr[:])
	limit := uint64(maxMessage)
	if l := c.limit.Load(); l > 0 {
		limit = min(limit, uint64(l))
	}
	if n == 0 && c.onEmpty != nil {
		c.onEmpty(c.rtail) // before the tail moves past it: see SetEmptyHook
	}
	defer func() { c.in.tail.Store(c.rtail) }() // the message's room back
	if n > limit {
		if err := c.skip(n); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %d bytes, limit %d", connerr.ErrMessageTooLong, n, limit)
	}
	if n <= uint64(len(buf)-offset) {
		if err := c.read(buf[offset:offset+int(n)], false); err != nil {
			return 0, err
		}
		return int(n), nil
	}
	var msg []byte
	for uint64(len(msg)) < n {
		msg = frame.Grow(msg, int64(n))
		got := len(msg)
		msg = msg[:cap(msg)]
		if err := c.read(msg[got:], false); err != nil {
			return 0, err
		}
	}
	return 0, &connerr.BufferTooShortError{Message: msg}
}

// skip reads n bytes of a message and throws them away, giving their
// room back as it goes: the work is what the peer actually sends.
func (c *Conn) skip(n uint64) error {
	for n > 0 {
		avail, err := c.avail(false)
		if err != nil {
			return err
		}
		k := min(uint64(avail), n)
		c.rtail += k
		n -= k
	}
	return nil
}

// read fills b from the in ring. first says that b starts a message: the
// peer's end there is a clean io.EOF, and elsewhere io.ErrUnexpectedEOF.
// The writer's head is looked at again only once what was seen of it has
// been read. The room read is given back before waiting, and by
// RecvBytesInto once per message: each store of the tail costs the writer
// a cache miss.
func (c *Conn) read(b []byte, first bool) error {
	r := &c.in
	for len(b) > 0 {
		avail, err := c.avail(first)
		if err != nil {
			return err
		}
		n := min(avail, len(b))
		at := int(c.rtail % RingSize)
		k := copy(b[:n], r.data[at:])
		copy(b[k:n], r.data)
		c.rtail += uint64(n)
		b = b[n:]
		first = false
	}
	return nil
}

// avail returns the number of bytes readable in the in ring, waiting
// for some if there are none (first: as read). The head, which the
// writer writes, is checked: a writer following the protocol moves it
// forward only, never more than RingSize past what we have read.
func (c *Conn) avail(first bool) (int, error) {
	r := &c.in
	for c.rhead == c.rtail {
		h := r.head.Load()
		if h-c.rtail > RingSize {
			return 0, fmt.Errorf("%w: the writer's head is %d, the tail %d, the ring %d bytes", ErrCorrupt, h, c.rtail, RingSize)
		}
		if h != c.rtail {
			c.rhead = h
			break
		}
		r.tail.Store(c.rtail) // room back before we wait
		if err := c.waitData(); err != nil {
			if err == io.EOF && !first {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	return int(c.rhead - c.rtail), nil
}

// waitData waits until the in ring holds data: it looks for up to
// lookFor, polls for a while where polling pays (see spinner), then
// sleeps, on a futex or the socket (see SetFutexSleep), until the writer
// rings. It returns io.EOF once the writer has closed or gone and
// everything it sent has been read.
func (c *Conn) waitData() error {
	if testHookWait != nil {
		testHookWait(c)
	}
	r := &c.in
	var until, hold time.Time // the end of polling, of sleeping on a futex (see futexHold)
	decided := false          // whether to poll, and for how long
	polling := false          // holds one of the process's polling slots
	defer func() {
		if polling {
			spinners.Add(-1)
		}
	}()
	start := time.Now()
	for i := 0; ; i++ {
		if r.head.Load() != c.rtail {
			if polling {
				c.spinner.learn(true)
			} else if !decided {
				c.spinner.quick()
			}
			return nil
		}
		if testHookLooked != nil {
			testHookLooked(c)
		}
		if r.closed.Load() == 1 {
			// The writer publishes its last head before it closes, but
			// both may have happened since the look above: look again,
			// or what it sent last would be lost (a pool worker that
			// leaves after its last result: 2-3 runs in 100 failed that
			// task as lost).
			if r.head.Load() != c.rtail {
				continue
			}
			return io.EOF
		}
		if c.closed.Load() {
			return connerr.ErrClosed
		}
		// A short pause between looks: a tight loop of loads slows the
		// writer down, on its sibling hardware thread and through the
		// cache line it must take back (manager_value_lock: median of
		// four runs 39 -> 48 k/s). One, and the clock every second look
		// (see lookFor): a message waits for half a look on average
		// before it is seen, and each side of a round trip waits once.
		pause.N(1)
		if !decided && i < maxLooks && (i%2 == 0 || time.Since(start) < lookFor) {
			continue
		}
		if !decided {
			decided = true
			if c.spinner.poll() && takeSlot(&spinners) {
				polling = true
				until = time.Now().Add(DefaultSpin)
				if testHookPoll != nil {
					testHookPoll(c)
				}
			}
		}
		if polling {
			// The clock every 16 looks, the scheduler every 64
			// (some 2 µs): other goroutines of the process run.
			if i%16 != 15 {
				continue
			}
			if time.Now().Before(until) {
				if i%64 == 63 {
					runtime.Gosched()
				}
				continue
			}
			polling = false
			spinners.Add(-1)
			c.spinner.learn(false)
		}
		how := uint32(sleepSocket)
		onFutex := false
		if c.futexSleep.Load() {
			now := time.Now()
			if hold.IsZero() {
				hold = now.Add(c.futexHold)
			}
			if d := c.rdeadline.Load(); d != 0 && d < hold.UnixNano() {
				// The socket, where the sleep moves after, ends the
				// wait at the deadline.
				hold = time.Unix(0, d)
			}
			onFutex = now.Before(hold) && takeSlot(&futexSleepers)
		}
		if onFutex {
			how = sleepFutex
		}
		r.sleeping.Swap(how) // a full fence before the look at head: see publish
		if r.head.Load() != c.rtail || r.closed.Load() == 1 || c.closed.Load() {
			// Came meanwhile. If the writer has taken the flag, its
			// doorbell will wake a later sleep for nothing, which is
			// harmless: after a wake there is no polling again, only
			// the few looks and another sleep.
			r.sleeping.CompareAndSwap(how, 0)
			if onFutex {
				futexSleepers.Add(-1)
			}
			continue
		}
		if testHookSleep != nil {
			testHookSleep(c, how)
		}
		if onFutex {
			// Until woken, until hold, or spuriously (the runtime's
			// preemption interrupts the sleep): look again, and sleep
			// again, on the socket after hold.
			futex.WaitHoldingP(r.sleeping, sleepFutex, max(time.Until(hold), 0))
			r.sleeping.CompareAndSwap(sleepFutex, 0)
			futexSleepers.Add(-1)
			continue
		}
		// A doorbell is empty: the length is capped so that a peer cannot
		// make it a big message. Poll first, which sleeps at once: a
		// receive would poll the socket for a while before sleeping,
		// which is what this wait has just decided not to do.
		_, err := c.sock.Poll(-1)
		if err == nil {
			_, err = c.sock.RecvBytes(1)
		}
		if err != nil {
			r.sleeping.Store(0)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The socket's read deadline (an mp.Conn's): the
				// receive gives up, nothing of a message read.
				return err
			}
			if errors.Is(err, connerr.ErrMessageTooLong) {
				return fmt.Errorf("%w: a doorbell with content", ErrCorrupt)
			}
			if r.head.Load() != c.rtail {
				return nil // what was sent before the end
			}
			if c.closed.Load() {
				return connerr.ErrClosed
			}
			return io.EOF
		}
	}
}

// lookFor bounds the looks a wait makes before it decides whether to poll
// or sleep, and maxLooks their number. They catch a message that comes
// within about a round trip of a peer that is running (0.6-0.9 µs
// between two processes on a 2-core machine) without the cost of a
// decision, and cost little when none comes. They were 16 looks with
// four pauses between each, and a pause takes 10 to 140 cycles depending
// on the CPU: 2.3-3 µs on this project's machine, longer than a whole
// round trip. A wait that then sleeps kept its CPU that long for nothing,
// and when its peer was waiting for that CPU (the two processes on one
// core, or the other core taken), every message waited for it: pipe_rtt
// spent most of its time there when polling did not pay.
//
// A look is one pause (28 ns on this project's machine) and, every
// second look, a reading of the clock (50 ns): some 55 ns a look where
// four pauses and the clock took 170 ns, and a message waited for half
// of that before it was seen, on each side of a round trip (pipe_rtt in
// quiet runs: 0.93-0.99 -> 0.86-0.97 µs). maxLooks lets about lookFor
// of them be made.
var lookFor = time.Microsecond

const maxLooks = 32

// testHookWait, if set by a test, runs as a wait begins.
var testHookWait func(*Conn)

// testHookLooked, if set by a test, runs in a wait after each look that
// found no data, before the look at the closed flag.
var testHookLooked func(*Conn)

// testHookPoll, if set by a test, runs as a wait starts polling.
var testHookPoll func(*Conn)

// testHookSleep, if set by a test, runs as a wait goes to sleep, how
// (sleepFutex or sleepSocket) already in the ring's sleeping word.
var testHookSleep func(c *Conn, how uint32)

// Polling an empty ring pays when the message comes while the receiver
// polls, and costs the CPU it burns otherwise; on a machine with fewer
// cores than processes that want to run (a manager with a hundred
// clients on two cores) the pollers take the CPU from the processes that
// would send, and every wait runs to the end of its polling. Two limits
// keep polling to where it pays, as a mutex's adaptive spinning does:
//
//   - in one process, at most GOMAXPROCS-1 goroutines poll at once (see
//     takeSlot): one P stays free for the goroutines the network
//     poller wakes, which the runtime would otherwise find only every
//     10 ms while pollers yield to each other, and a process on one core
//     does not poll at all, as its peer cannot run meanwhile;
//   - each Conn polls only while its polling mostly ends with a message
//     (see spinner); once it stops, it tries again now and then, less
//     often after each try in vain. A receiver whose peer is slow to
//     answer, as the clients of a loaded server are, sleeps at once,
//     and polls again soon after messages come quickly again. Waits
//     that sleep teach nothing: they end a wake-up later than the
//     message, and two peers that both sleep would each see the other
//     slow to answer, and never poll again. (Gating the server's
//     polling on its client being awake did just that: 128 clients on
//     2 cores, 75-100 k ops/s with it, 180-190 k without.)

// spinners counts the goroutines of this process polling a ring.
var spinners atomic.Int32

// takeSlot takes one of the GOMAXPROCS-1 slots that count counts (the
// goroutines polling, or sleeping on a futex), if one is free.
func takeSlot(count *atomic.Int32) bool {
	if count.Add(1) <= procs()-1 {
		return true
	}
	count.Add(-1)
	return false
}

// procs is GOMAXPROCS as seen at most procsEvery calls ago. Asking the
// runtime takes its scheduler lock, which every goroutine that polls with
// Gosched also takes: asked on each wait, it cost the 1-client manager
// workload about a fifth of its speed. GOMAXPROCS rarely changes, and a
// stale value only misjudges polling for a while.
func procs() int32 {
	if n := procsCalls.Add(1); n%procsEvery == 1 || procsSeen.Load() == 0 {
		procsSeen.Store(int32(runtime.GOMAXPROCS(0)))
	}
	return procsSeen.Load()
}

const procsEvery = 4096

var procsCalls atomic.Uint32
var procsSeen atomic.Int32

// spinner decides whether a Conn polls its ring before sleeping. While
// score is at least worthScore, every wait polls and score keeps the
// share of the recent polls that a message ended, as a moving average
// (the last four count for two thirds; scoreOne is all of them). Below,
// one wait in gap+1 polls, as a try: a try that a message ends brings
// back polling on every wait, and halves gap for the next time polling
// stops; a try in vain doubles gap, up to maxGap.
type spinner struct {
	score uint32
	gap   uint32
	skip  uint32 // the waits left before the next try
}

const (
	scoreOne   = 1 << 10
	scoreShift = 2 // each poll weighs 1/4
	// worthScore is the share of polls that a message must end for
	// polling to pay. A poll in vain costs the whole polling time; one
	// that a message ends saves a sleep and a wake, a few times shorter
	// in CPU, but on a busy machine a wake-up also waits for a CPU, as
	// long as a poll or longer, and for a request and its reply that
	// latency is the throughput: a quarter is the level at which the
	// manager's 1-client workloads kept their speed on a loaded machine.
	// From all polls paying, it takes five in vain in a row to stop
	// polling; one in two paying keeps it.
	worthScore = scoreOne / 4
	// maxGap bounds the waits between two tries, and so how long two
	// sides that both sleep go on sleeping once polling pays again:
	// each wait then costs a wake-up, 5-15 µs on a 2-core virtual
	// machine, against about 1 µs for a round trip that polls. With
	// 256, that could last 256 waits, 2-4 ms, a sixth of a pipe_rtt
	// run (20000 round trips); some quiet runs spent 800-3500 of their
	// waits asleep, in one to three stretches. A try in vain every 64
	// waits costs under 1 µs a wait at the default polling time.
	maxGap = 64
)

func newSpinner() spinner { return spinner{score: scoreOne, gap: 1} }

// worth reports whether polling has been paying: then every wait polls.
func (s *spinner) worth() bool { return s.score >= worthScore }

// poll reports whether the next wait polls.
func (s *spinner) poll() bool {
	if s.worth() {
		return true
	}
	if s.skip > 0 {
		s.skip--
		return false
	}
	return true
}

// quick records a wait that its message ended within the first looks,
// before any polling: the peer answers fast, as a poll that pays would
// show. Counting them keeps a connection whose messages mostly come at
// once polling through a burst of slow waits, and brings it back to
// polling soon after one; without them only the slow waits taught, and
// the two sides of a 1-client manager could each make the other slow by
// sleeping, for long stretches (1 client: 0.7-1.6 M ops/s from run to
// run, against 1.4-1.8 M when every wait polled).
func (s *spinner) quick() {
	if s.score < scoreOne {
		s.score += (scoreOne - s.score) >> scoreShift
	}
}

// learn records how a poll ended: caught if a message ended it.
func (s *spinner) learn(caught bool) {
	if !s.worth() { // a try
		if caught {
			s.score = scoreOne
			s.gap = max(s.gap/2, 1)
		} else {
			s.gap = min(2*s.gap, maxGap)
			s.skip = s.gap
		}
		return
	}
	s.score -= s.score >> scoreShift
	if caught {
		s.score += scoreOne >> scoreShift
	}
	if !s.worth() {
		s.skip = s.gap
	}
}

// A Poller is a ring reader's polling policy (spinner and the process's
// polling slots, see waitData) for another wait of the same shape: a
// server waiting for the next request of a client that sends it a few
// microseconds after it reads a reply, over a socket that is read by
// polling it without waiting. Start says whether this wait polls, and
// for how long; End, called once after a Start that said yes, gives the
// slot back and records whether the poll ended with input. Not for use
// by several goroutines at once.
type Poller struct {
	s      spinner
	inited bool
}

// Start reports whether the next wait polls, and if so until when; it
// then holds one of the process's polling slots until End.
func (p *Poller) Start() (time.Time, bool) {
	if !p.inited {
		p.s, p.inited = newSpinner(), true
	}
	if !p.s.poll() || !takeSlot(&spinners) {
		return time.Time{}, false
	}
	return time.Now().Add(DefaultSpin), true
}

// End ends a wait that Start had poll: caught if input ended the poll.
func (p *Poller) End(caught bool) {
	spinners.Add(-1)
	p.s.learn(caught)
}

// EndQuick ends a wait that Start had poll, whose first look found its
// input: it gives the slot back and records the wait as quick (see
// spinner.quick), not as a poll, which End(false) would count in vain:
// the peer answered before any polling, as fast as a poll that pays
// would show.
func (p *Poller) EndQuick() {
	spinners.Add(-1)
	p.s.quick()
}

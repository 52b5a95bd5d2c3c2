//go:build linux

package mp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/connerr"
	"github.com/go-mp/mp/internal/frame"
	"github.com/go-mp/mp/internal/ringconn"
	"github.com/go-mp/mp/internal/shm"
	"golang.org/x/sys/unix"
)

// A Pipe between two processes carries its messages through rings in
// shared memory (see internal/ringconn) once one of its ends has left the
// process that made it: a small message then costs two copies instead of
// a system call on each side, and a round trip between two processes a
// few microseconds less. The socket stays under the rings: for Fileno and
// Wait, as the doorbell of a receive that sleeps long (a short sleep is on
// a futex in the memory), for messages that carry descriptors or are too
// long for a ring, and for the end: a peer sees io.EOF once every copy of
// the other end is closed, as before.
//
// # Memory
//
// The rings cost pipeMemSize bytes (about 129 KiB: ringconn.MemSize and a
// header) of shared memory per Pipe, made when either end is first
// marshalled to go to another process (passed to a child, or sent inside
// a message), never for a Pipe whose ends stay in one process. Each
// process that holds an end maps it once per Conn.
//
// # Several holders of one end
//
// An end may be held by several processes at once: the parent keeps its
// copy of the end it passed to a child, or passes one end to two children
// which take turns with a Lock. The rings are single-producer and
// single-consumer, so the holders of an end take turns through two locks
// in the shared memory (robust futex mutexes, see mutex): one for sending
// on the end and one for receiving. A holder takes the lock for each
// message and gives it back after (an uncontended lock costs one atomic
// operation); each turn starts from the ring positions in the shared
// memory (see ringconn.NewShared). So any sequence of sends and receives
// by any holders is one stream, as on the socket: a message is never
// duplicated, reordered or interleaved with another, whichever process
// sends or receives it.
//
// Messages go through the ring whole (ringconn.NewShared: a send waits for
// room for all of it, then publishes it at once), so a holder that dies
// or stops in the middle of a send leaves nothing of its message in the
// ring, and a receive never waits inside a ring message. A message that
// carries descriptors, is empty, or is longer than ringconn.MaxShared goes
// over the socket as before, announced by an empty message in the ring
// (a marker): the receiver takes ring messages in order and, at a marker,
// the next frame from the socket. The marker goes first, so that a
// receiver reads a long frame while it is sent. The socket's stream holds
// besides messages three frames of four bytes with lengths that CPython's
// framing never uses (only Pipes, never connections made by package
// connection, see them): frameSwitch, frameBell and frameWithdrawn.
//
// Each direction moves to the ring once: its first send after the ring
// exists sends frameSwitch over the socket, and a receiver that reads it
// goes on in the ring. A receive on a Pipe end reads exactly one frame
// from the socket (never ahead), so every frame stays on the socket for
// whichever holder receives next.
//
// The per-direction states in the shared memory say what a holder that
// stopped left behind, for the next holder (each is written before the
// step it records, so that a holder that dies between the two leaves the
// next one knowing: a frameSwitch that a receiver saw but did not take,
// or that a sender sent without recording it, is skipped as a stray; a
// marker whose taking was recorded but whose room was not given back is
// skipped, rmark saying where it ends):
//
//   - a sender that published a marker and sent nothing of its frame (its
//     write deadline passed, or it closed or died) leaves wstate
//     pipeMarked: the next send on the end (by it or another holder) first
//     sends frameWithdrawn, and the receiver skips the marker;
//   - a sender that sent part of a frame and closed or died leaves
//     pipeInside, which the next send turns into pipeTorn: the frame
//     cannot be finished, the direction is broken, and sends fail with
//     errPipeBroken. (A receive already in that frame waits for its end
//     as on a bare socket: io.ErrUnexpectedEOF once every copy of the
//     sending end is closed.)
//   - a receiver that took a marker and nothing of its frame leaves
//     rstate pipeMarked: the next receive reads the frame;
//   - a receiver that read part of a frame and closed or died leaves
//     pipeInside, which the next receive turns into pipeTorn: that
//     message is lost and receives fail with errPipeTorn (matching
//     io.ErrUnexpectedEOF).
//
// A holder whose deadline ends a send or receive in the middle of a
// socket frame keeps the lock until it finishes the frame (its next send
// or receive does), as Conn's deadlines promise; the other holders wait.
//
// What a holder that dies loses: a ring message it had taken out of the
// ring (its tail stored) but not yet returned is lost, never delivered
// twice; one it had not taken stays for the next receive.
//
// # The shared memory is input
//
// The peer may write anything there. Ring positions are checked by
// ringconn (ErrCorrupt), rmark against them; the state words are only
// compared, and a value outside those listed above counts as pipeTorn:
// the end fails with an error, never a panic. A lock word naming a
// process that is not alive is taken over (see mutex); one naming a live
// process makes the holders wait as for a holder that keeps the lock, no
// longer than their deadlines and their Close.
//
// # Poll and Wait
//
// Poll and Wait see a message waiting in a ring: they look at the ring,
// and when it is empty ask the next sender to ring the socket's doorbell
// (ringconn.Conn.Arm) before they wait on the socket. Fileno's descriptor
// turns readable for a ring message only while a receive, Poll or Wait
// waits: poll it through Wait, not by itself.

// Layout of a Pipe's shared memory: a header, then the rings. For each
// side s (0 for the first end Pipe returns), the block at 128*s holds the
// state of the direction that side sends on: the lock of its senders,
// the sending state and mode, and (in another cache line, written by the
// other side) the lock of its receivers, the receiving state and mode,
// and rmark, where in the ring the last marker taken ends.
const (
	pipeOffWLock  = 0
	pipeOffWState = 8
	pipeOffWMode  = 12
	pipeOffRLock  = 64
	pipeOffRState = 72
	pipeOffRMode  = 76
	pipeOffRMark  = 80
	pipeHeader    = 256
	pipeMemSize   = pipeHeader + ringconn.MemSize
)

// States of a direction (wstate, rstate), see the file's comment.
const (
	pipeIdle   = 0
	pipeMarked = 1 // a marker is out (taken) and its frame not started
	pipeInside = 2 // this holder is inside a socket frame
	pipeTorn   = 3 // a holder left a frame half done: broken
)

// Special frames on a Pipe's socket: lengths CPython's framing never
// uses (it has only -1, for a long length).
const (
	frameSwitch    = -2 // the sender goes on in the ring
	frameBell      = -3 // a doorbell (see ringconn)
	frameWithdrawn = -4 // the message the last marker announced is not coming
)

var (
	// errPipeTorn is returned by receives on an end whose other holder
	// stopped in the middle of receiving a message over the socket.
	errPipeTorn = fmt.Errorf("mp: another holder of this Pipe end stopped in the middle of receiving a message; the rest of the stream cannot be framed: %w", io.ErrUnexpectedEOF)
	// errPipeBroken is returned by sends on an end whose other holder
	// stopped in the middle of sending a message over the socket.
	errPipeBroken = fmt.Errorf("mp: another holder of this Pipe end stopped in the middle of sending a message; the direction is broken: %w", io.ErrClosedPipe)
)

// pipeEnd is what a Conn made by Pipe (or received as a Pipe end) has
// beyond the socket.
type pipeEnd struct {
	side uint8     // 0 for the first end Pipe returns, 1 for the other
	pair *pipePair // the two ends, in the process that made the Pipe; nil elsewhere
	ring atomic.Pointer[pipeRing]

	heldR bool // under the Conn's rmu: this Conn holds the receivers' lock
	heldW bool // under the Conn's wmu: this Conn holds the senders' lock
	// owe (under wmu) says this Conn left wstate at pipeMarked or
	// pipeInside and must finish that first.
	owe bool
	// scratch (under rmu) receives ring messages before they are copied
	// out, kept so that receiving allocates only the message.
	scratch []byte
	// bell (under rmu) is the doorbell's reads (pipeSock's RecvBytes and
	// Poll): see bellReads.
	bell bellReads
}

// bellReads holds what pipeSock's reads of the doorbell share with the
// functions they give the socket's RawConn, and those functions, made
// once per end: closures over the reads' locals escaped to the heap, 2
// allocations a round trip whenever a receiver slept on the doorbell (a
// slow peer, a busy machine).
type bellReads struct {
	hdr   [4]byte
	n     int
	err   error
	peek  func(fd uintptr)      // peeks at hdr: n, err
	ready func(fd uintptr) bool // whether the socket is readable: err
}

// reads returns b, its functions made.
func (b *bellReads) reads() *bellReads {
	if b.peek == nil {
		b.peek = func(fd uintptr) { b.n, b.err = peekSocket(fd, b.hdr[:]) }
		b.ready = func(fd uintptr) bool {
			var ready bool
			ready, b.err = peekReadable(fd)
			return ready
		}
	}
	return b
}

// pipePair makes the rings of a Pipe when either end first leaves the
// process that made it, for both ends.
type pipePair struct {
	mu   sync.Mutex
	ends [2]*Conn
}

// pipeMem is a Pipe's shared memory in this process, released by the
// last of the Conns that use it.
type pipeMem struct {
	arr  *RawArray[byte]
	refs atomic.Int32
}

func (m *pipeMem) release() {
	if m.refs.Add(-1) == 0 {
		m.arr.Close()
	}
}

// pipeRing is an end's view of its Pipe's shared memory.
type pipeRing struct {
	mem                          *pipeMem
	rc                           *ringconn.Conn
	wlock, rlock                 mutex
	wstate, wmode, rstate, rmode *atomic.Uint32
	rmark                        *atomic.Uint64

	// live guards the mapping against Close for the few uses that hold
	// neither the Conn's rmu nor its wmu (Wait's look, a deadline's
	// wake): Close unmaps it once gone is set, with both held.
	live sync.RWMutex
	gone bool
}

// use runs f on pr's memory unless Close has released it, and reports
// whether it ran.
func (pr *pipeRing) use(f func()) bool {
	pr.live.RLock()
	defer pr.live.RUnlock()
	if !pr.gone {
		f()
	}
	return !pr.gone
}

// release unmaps pr's memory (the last Conn of this process to release
// it does). Called by Close with rmu and wmu no longer in use.
func (pr *pipeRing) release() {
	pr.live.Lock()
	pr.gone = true
	pr.live.Unlock()
	pr.mem.release()
}

// newPipeRing maps the rings of an end on side side over mem.
func newPipeRing(c *Conn, mem *pipeMem, side uint8) (*pipeRing, error) {
	s := mem.arr.e.s
	rc, err := ringconn.NewShared(pipeSock{c}, mem.arr.e.e[pipeHeader:], side == 0)
	if err != nil {
		return nil, err
	}
	w, r := 128*int(side), 128*int(1-side)
	pr := &pipeRing{
		mem:    mem,
		rc:     rc,
		wlock:  newMutex(s, w+pipeOffWLock),
		wstate: s.u32(w + pipeOffWState),
		wmode:  s.u32(w + pipeOffWMode),
		rlock:  newMutex(s, r+pipeOffRLock),
		rstate: s.u32(r + pipeOffRState),
		rmode:  s.u32(r + pipeOffRMode),
		rmark:  s.u64(r + pipeOffRMark),
	}
	// A marker taken is recorded before the ring's tail moves past it:
	// a holder that dies in between leaves rstate saying so, and rmark
	// where the marker ends, which the next receive skips to (see
	// takenMarker).
	// A receive that waits sleeps on a futex (see
	// ringconn.Conn.SetFutexSleep): a Pipe end has a goroutine or a few
	// receiving, and a futex wake costs a system call on each side
	// where the socket's doorbell costs four or five (pipe_rtt on a
	// loaded 2-core machine: 30-34 -> 13-29 us).
	rc.SetFutexSleep(true)
	rc.SetEmptyHook(func(end uint64) {
		pr.rmark.Store(end)
		pr.rstate.Store(pipeMarked)
		if testHookMarkerTaken != nil {
			testHookMarkerTaken()
		}
	})
	return pr, nil
}

// testHookMarkerTaken, if set by a test, runs as a receive has taken a
// marker out of the ring and before the ring's tail moves past it.
var testHookMarkerTaken func()

// testHookSwitchSent, if set by a test, runs as a send has sent
// frameSwitch and before it records that its direction moved.
var testHookSwitchSent func()

// attach makes pr c's rings.
func (c *Conn) attach(pr *pipeRing) {
	if d := c.dl.writeNano.Load(); d != 0 {
		pr.rc.SetWriteDeadline(time.Unix(0, d))
	}
	pr.rc.SetReadDeadline(c.dl.readTime())
	c.pipe.ring.Store(pr)
}

// ringFor returns c's rings, making them for both ends of the Pipe if
// c is in the process that made it and they do not exist yet.
func (c *Conn) ringFor() (*pipeRing, error) {
	p := c.pipe
	if pr := p.ring.Load(); pr != nil || p.pair == nil {
		return pr, nil
	}
	pp := p.pair
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pr := p.ring.Load(); pr != nil {
		return pr, nil
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	arr, err := NewRawArray[byte](pipeMemSize)
	if err != nil {
		return nil, err
	}
	mem := &pipeMem{arr: arr}
	for side, e := range pp.ends {
		if e == nil || e.closed.Load() {
			continue // Close has run or runs: it would not release the memory
		}
		pr, err := newPipeRing(e, mem, uint8(side))
		if err != nil {
			if mem.refs.Load() == 0 {
				arr.Close()
			}
			return nil, err
		}
		mem.refs.Add(1)
		e.attach(pr)
	}
	return p.ring.Load(), nil
}

// detachRing takes c's rings away as c closes: under the pair's lock, so
// that ringFor does not attach rings to c after.
func (c *Conn) detachRing() *pipeRing {
	p := c.pipe
	if p == nil {
		return nil
	}
	if p.pair != nil {
		p.pair.mu.Lock()
		defer p.pair.mu.Unlock()
	}
	return p.ring.Swap(nil)
}

// pipeWire is how a Pipe end with rings travels: the socket's handle,
// the memory, and the side.
type pipeWire struct {
	_    struct{} `cbor:",toarray"`
	Sock []byte
	Mem  *RawArray[byte]
	Side uint8
}

// marshalPipe encodes a Pipe end with its rings, making them if needed.
func (c *Conn) marshalPipe(sock []byte) ([]byte, error) {
	pr, err := c.ringFor()
	if err != nil || pr == nil {
		return sock, err
	}
	return codec.Marshal(pipeWire{Sock: sock, Mem: pr.mem.arr, Side: c.pipe.side})
}

// unmarshalPipe decodes into c a Pipe end sent with its rings. Nothing
// is trusted: memory of the wrong size or a side other than 0 and 1 is
// refused.
func (c *Conn) unmarshalPipe(data []byte) error {
	var w pipeWire
	err := codec.Unmarshal(data, &w)
	if err == nil && w.Sock == nil {
		err = errors.New("mp: a Pipe end without its socket")
	}
	fd := -1
	var flags uint32
	if err == nil {
		fd, flags, err = codec.DecodeHandle(w.Sock, codec.HandleConn)
	}
	if err == nil && (w.Mem == nil || w.Mem.Len() != pipeMemSize || w.Side > 1) {
		closeFD(fd)
		err = fmt.Errorf("mp: a Pipe end whose ring memory or side is wrong: %w", os.ErrInvalid)
	}
	var nc *Conn
	if err == nil {
		nc, err = connFromFD(fd, flags)
	}
	if err != nil {
		if w.Mem != nil {
			w.Mem.Close()
		}
		return err
	}
	*c = Conn{t: nc.t, rc: nc.rc, unix: true, readable: nc.readable, writable: nc.writable, pipe: &pipeEnd{side: w.Side}}
	mem := &pipeMem{arr: w.Mem}
	mem.refs.Store(1)
	pr, err := newPipeRing(c, mem, w.Side)
	if err != nil {
		c.Close()
		mem.release()
		return err
	}
	c.attach(pr)
	return nil
}

// isPipeWire reports whether data is a pipeWire rather than a bare
// handle: a CBOR array (major type 4) of three.
func isPipeWire(data []byte) bool { return len(data) > 0 && data[0] == 0x83 }

// ---- locks ----

// lockPipe takes m for c (once: held says c has it), waiting no longer
// than deadline (zero: no limit) and giving up when c closes. It reports
// whether the previous holder died with the lock.
func (c *Conn) lockPipe(m mutex, held *bool, deadline time.Time) (bool, error) {
	if *held {
		return false, nil
	}
	me := shm.Self()
	if m.tryLock(me) {
		*held = true
		return false, nil
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	dead, err := m.lockOr(ctx, me, c.closed.Load)
	switch {
	case err == nil:
		*held = true
		return dead != 0, nil
	case errors.Is(err, context.DeadlineExceeded):
		return false, os.ErrDeadlineExceeded
	case c.closed.Load():
		return false, ErrClosed
	}
	return false, err
}

// unlockPipe gives m back if c holds it.
func unlockPipe(m mutex, held *bool) {
	if *held {
		*held = false
		m.unlock()
	}
}

// ---- sending ----

// writePipe sends one message on an end with rings. Called with wmu held.
func (c *Conn) writePipe(pr *pipeRing, b []byte, fds []int) error {
	p := c.pipe
	var deadline time.Time
	if d := c.dl.writeNano.Load(); d != 0 {
		if time.Now().UnixNano() >= d {
			return os.ErrDeadlineExceeded
		}
		deadline = time.Unix(0, d)
	}
	if _, err := c.lockPipe(pr.wlock, &p.heldW, deadline); err != nil {
		return err
	}
	err := c.sendPipe(pr, b, fds)
	if !p.owe {
		unlockPipe(pr.wlock, &p.heldW)
	}
	return err
}

// sendPipe is writePipe with the senders' lock held.
func (c *Conn) sendPipe(pr *pipeRing, b []byte, fds []int) error {
	p := c.pipe
	if err := c.finishPipeSend(pr); err != nil {
		return err
	}
	if pr.wmode.Load() == 0 {
		// The first send since the ring exists: the receiver goes on in
		// the ring after this frame (once it has it whole, if a write
		// deadline keeps part of it back).
		err := c.socketSend(pr, bellFrame(frameSwitch), nil)
		if testHookSwitchSent != nil {
			testHookSwitchSent()
		}
		if err == nil || len(c.wpend) > 0 {
			pr.wmode.Store(1)
		}
		if err != nil {
			return err
		}
	}
	if len(fds) == 0 && len(b) > 0 && len(b) <= ringconn.MaxShared {
		return c.mapErr(pr.rc.SendBytes(b))
	}
	// Over the socket, announced by a marker in the ring.
	if err := c.mapErr(pr.rc.SendBytes(nil)); err != nil {
		return err // nothing sent
	}
	pr.wstate.Store(pipeMarked)
	p.owe = true
	return c.socketSend(pr, c.frame(b), fds, b)
}

// finishPipeSend deals with what a send before left: this Conn's frame
// kept back by a write deadline, a marker whose frame did not go (by this
// Conn or a holder that closed or died), or a broken direction.
func (c *Conn) finishPipeSend(pr *pipeRing) error {
	p := c.pipe
	if len(c.wpend) > 0 {
		if err := c.sendPending(); err != nil {
			return err
		}
		if p.owe {
			pr.wstate.Store(pipeIdle)
			p.owe = false
		}
	}
	switch pr.wstate.Load() {
	case pipeIdle:
		return nil
	case pipeMarked:
		if err := c.socketSend(pr, bellFrame(frameWithdrawn), nil); err != nil {
			return err
		}
		pr.wstate.Store(pipeIdle)
		p.owe = false
		return nil
	}
	pr.wstate.Store(pipeTorn)
	p.owe = false
	return errPipeBroken
}

// socketSend sends bufs over the socket as one frame (see writeAll).
// The frame is in wstate's hands: when the write deadline stops it after
// its first bytes, wstate says so and this Conn keeps the senders' lock
// until a later send finishes it; when it went whole, or not at all, the
// state is as before (pipeMarked for a frame behind a marker, which a
// later send withdraws).
func (c *Conn) socketSend(pr *pipeRing, hdr []byte, fds []int, body ...[]byte) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	bufs := [][]byte{hdr}
	for _, b := range body {
		if len(b) > 0 {
			bufs = append(bufs, b) // writeAll ends when its bufs are
		}
	}
	err := c.writeAll(bufs, oob)
	switch {
	case err == nil:
		if c.pipe.owe {
			pr.wstate.Store(pipeIdle)
			c.pipe.owe = false
		}
	case len(c.wpend) > 0:
		pr.wstate.Store(pipeInside)
		c.pipe.owe = true
	}
	return err
}

// frame returns b's frame header in the Conn's buffer.
func (c *Conn) frame(b []byte) []byte {
	c.wbuf = frame.AppendHeader(c.wbuf[:0], len(b))
	return c.wbuf
}

// bellFrame returns a special frame's four bytes.
func bellFrame(v int32) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(v))
}

// specialFrame returns the special frame b starts with, or 0.
func specialFrame(b []byte) int32 {
	if len(b) < 4 {
		return 0
	}
	switch v := int32(binary.BigEndian.Uint32(b)); v {
	case frameSwitch, frameBell, frameWithdrawn:
		return v
	}
	return 0
}

// ---- receiving ----

// readPipe receives one message on an end with rings. Called with rmu
// held.
func (c *Conn) readPipe(pr *pipeRing, dst []byte) ([]byte, error) {
	p := c.pipe
	if _, err := c.lockPipe(pr.rlock, &p.heldR, c.dl.readTime()); err != nil {
		return nil, err
	}
	msg, err := c.recvPipe(pr, dst)
	if !c.pend.active {
		// Kept only by a frame this Conn is inside (a read deadline
		// interrupted it). A marker taken without its frame is
		// rstate's: the next receive, this Conn's or another
		// holder's, reads the frame.
		unlockPipe(pr.rlock, &p.heldR)
	}
	return msg, err
}

// recvPipe is readPipe with the receivers' lock held.
func (c *Conn) recvPipe(pr *pipeRing, dst []byte) ([]byte, error) {
	if c.pend.active {
		// This Conn's frame that a read deadline interrupted.
		msg, err := c.resumeMessage(dst)
		if !c.pend.active {
			pr.rstate.Store(pipeIdle)
		}
		return msg, err
	}
	for {
		switch st := pr.rstate.Load(); st {
		case pipeIdle:
		case pipeMarked:
			if err := c.takenMarker(pr); err != nil {
				return nil, err
			}
			msg, special, err := c.pipeFrame(pr, dst)
			if special == frameWithdrawn {
				pr.rstate.Store(pipeIdle)
				continue
			}
			if special != 0 {
				return nil, fmt.Errorf("%w: a frame %d where a message was announced", ringconn.ErrCorrupt, special)
			}
			if err == io.EOF {
				// Every sender is gone and the marked frame never
				// came: what the ring still holds is next.
				pr.rstate.Store(pipeIdle)
				continue
			}
			return msg, err
		default:
			pr.rstate.Store(pipeTorn)
			return nil, errPipeTorn
		}
		if pr.rmode.Load() == 0 {
			if c.rend == c.rpos {
				// A frameSwitch moves rmode before it leaves the
				// socket: a holder that dies in between leaves the
				// next one in ring mode, which skips a stray switch.
				sw, err := c.switchNext()
				if err != nil {
					return nil, err
				}
				if sw {
					pr.rmode.Store(1)
					c.rc.Control(takeBell)
					continue
				}
			}
			msg, special, err := c.pipeFrame(pr, dst)
			if special == frameSwitch {
				pr.rmode.Store(1)
				continue
			}
			if special != 0 {
				return nil, fmt.Errorf("%w: a stray frame %d before the ring", ringconn.ErrCorrupt, special)
			}
			return msg, err
		}
		pr.rc.SetLimit(c.maxLen)
		msg, err := c.ringMessage(pr, dst)
		if err != nil {
			return nil, c.mapErr(err)
		}
		if len(msg) == 0 {
			continue // a marker, recorded in rstate (see newPipeRing)
		}
		return msg, nil
	}
}

// decodeBuffer returns memory for Recv to receive a message into and
// decode it from, on an end with rings: the scratch buffer that ring
// messages come through anyway, which saves a copy and an allocation per
// message. Only for the default codec, which copies whatever it keeps of
// the message (strings, byte strings, raw messages; a cbor.Unmarshaler
// must copy what it keeps, as that package's contract says): the buffer
// is reused by the next receive. nil (a new slice per message) on an end
// without rings. Called with rmu held, which the decoding holds too.
func (c *Conn) decodeBuffer() []byte {
	if c.pipe == nil || c.pipe.ring.Load() == nil {
		return nil
	}
	if c.pipe.scratch == nil {
		c.pipe.scratch = make([]byte, ringconn.MaxShared)
	}
	return c.pipe.scratch
}

// ringMessage takes one message out of the ring, into dst when it fits.
// An empty result is a marker.
func (c *Conn) ringMessage(pr *pipeRing, dst []byte) ([]byte, error) {
	if dst == nil {
		n, err := pr.rc.RecvBytesInto(c.decodeBuffer(), 0)
		if err != nil || n == 0 {
			return nil, err
		}
		return append([]byte(nil), c.pipe.scratch[:n]...), nil
	}
	n, err := pr.rc.RecvBytesInto(dst, 0)
	if err != nil {
		return shortMessage(err)
	}
	if n == 0 {
		return nil, nil
	}
	return dst[:n], nil
}

// shortMessage returns the message of a receive that failed with err:
// the bytes of one too long for the buffer, which came whole in the
// error, or err. Apart from ringMessage, so that a receive without error
// does not allocate errors.As's target (one allocation per message).
func shortMessage(err error) ([]byte, error) {
	var short *BufferTooShortError
	if errors.As(err, &short) {
		return short.Message, nil
	}
	return nil, err
}

// pipeFrame reads one frame from the socket, skipping doorbells, and
// returns it, or the special frame it is. A read deadline in the middle
// leaves rstate at pipeInside, and the frame for the next receive.
func (c *Conn) pipeFrame(pr *pipeRing, dst []byte) ([]byte, int32, error) {
	for {
		msg, special, err := c.readFrame(dst)
		if special == frameBell || special == frameSwitch {
			// A switch here is a stray one: a sender that died
			// after sending it and before recording it left the
			// next sender to send another.
			continue
		}
		whole := err == nil || errors.Is(err, ErrMessageTooLong) // taken, or skipped to its end
		if c.pend.active {
			pr.rstate.Store(pipeInside)
		} else if whole && special == 0 && pr.rstate.Load() == pipeMarked {
			pr.rstate.Store(pipeIdle)
		}
		return msg, special, err
	}
}

// takenMarker makes sure that the ring's tail is past the marker rstate
// records, which a holder that died after taking it may have left
// before it. Anything but the marker's 8 bytes between them is the
// peer's garbage.
func (c *Conn) takenMarker(pr *pipeRing) error {
	end, tail := pr.rmark.Load(), pr.rc.Tail()
	switch end - tail {
	case 0:
		return nil
	case 8:
		return c.mapErr(pr.rc.SkipTo(end))
	}
	pr.rstate.Store(pipeTorn)
	return errPipeTorn
}

// switchNext waits until the socket holds a frame's header (or its end)
// and reports whether it is a frameSwitch, taking nothing.
func (c *Conn) switchNext() (bool, error) {
	var hdr [4]byte
	var n int
	var perr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, perr = peekSocket(fd, hdr[:])
		return perr != nil || n == 0 || n == len(hdr)
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return false, c.mapErr(err)
	}
	return n == len(hdr) && specialFrame(hdr[:]) == frameSwitch, nil
}

// takeSocket takes n (at most 8) bytes that a peek saw off the socket.
// (unix.Recvfrom allocated the sender's address it returns.)
func takeSocket(fd uintptr, n int) {
	var b [8]byte
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(min(n, len(b))),
			unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return
		}
	}
}

// takeBell takes a doorbell, or a frameSwitch, off the socket.
func takeBell(fd uintptr) { takeSocket(fd, 4) }

// readTime returns the read deadline (zero: none).
func (d *deadlines) readTime() time.Time {
	if n := d.readNano.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ---- the socket under the rings ----

// pipeSock is the socket under an end's rings, as ringconn uses it: the
// Conn's own socket, without its framing's locks (ringconn calls it with
// the Conn's rmu or wmu held). Doorbells are frameBell frames.
type pipeSock struct{ c *Conn }

var bellBytes = bellFrame(frameBell)

// SendBytes rings the doorbell (b is always empty): without waiting, as
// a socket too full for four bytes holds data that wakes the reader.
func (s pipeSock) SendBytes(b []byte) error {
	return s.c.rc.Control(func(fd uintptr) {
		unix.SendmsgN(int(fd), bellBytes, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	})
}

// RecvBytes takes a doorbell; any other frame at the head of the socket
// is the peer's error (see ringconn.Socket), and the end io.EOF.
func (s pipeSock) RecvBytes(int) ([]byte, error) {
	b := s.c.pipe.bell.reads()
	b.err = nil
	err := s.c.rc.Control(b.peek)
	switch {
	case err != nil:
		return nil, s.c.mapErr(err)
	case b.err != nil:
		return nil, s.c.mapErr(b.err)
	case b.n == 0:
		return nil, io.EOF
	case b.n < 4:
		return nil, nil // the rest comes
	case specialFrame(b.hdr[:]) != frameBell && specialFrame(b.hdr[:]) != frameSwitch: // a stray switch, see pipeFrame
		return nil, fmt.Errorf("%w: a frame where a doorbell was expected", connerr.ErrMessageTooLong)
	}
	s.c.rc.Control(takeBell)
	return nil, nil
}

// Poll waits until the socket is readable, or the read deadline.
func (s pipeSock) Poll(time.Duration) (bool, error) {
	b := s.c.pipe.bell.reads()
	b.err = nil
	err := s.c.rc.Read(b.ready)
	if err == nil {
		err = b.err
	}
	if err = s.c.mapErr(err); err == io.EOF {
		return true, nil
	}
	return err == nil, err
}

// Fileno returns the socket's descriptor.
func (s pipeSock) Fileno() (int, error) {
	fd := -1
	if err := s.c.rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Close closes the socket (Conn.Close, through the rings' Close).
func (s pipeSock) Close() error { return s.c.t.Close() }

// peekSocket copies what the socket holds into b without taking it: n is
// 0 at the end, and EAGAIN (nothing yet) is n = -1.
func peekSocket(fd uintptr, b []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return -1, nil
		}
		return 0, os.NewSyscallError("recv", errno)
	}
}

// ---- Poll and Wait ----

// pipeReady is Poll's look at an end with rings, with rmu held: whether
// a message (or the end) is ready, taking doorbells and a frameSwitch
// off the socket on the way. When it reports false, the next sender
// rings the doorbell (see ringconn.Conn.Arm): waiting for the socket to
// turn readable then waits for the next message.
func (c *Conn) pipeReady(pr *pipeRing, fd uintptr) (bool, error) {
	p := c.pipe
	for {
		if c.pend.active || (p.heldR && pr.rstate.Load() == pipeMarked) {
			return peekReadable(fd) // the next message is a socket frame
		}
		var hdr [4]byte
		n, err := peekSocket(fd, hdr[:])
		if err != nil {
			return true, err
		}
		if n == 0 {
			return true, nil // the end
		}
		if sp := specialFrame(hdr[:]); n == 4 && (sp == frameBell || sp == frameSwitch) {
			if c.takeSpecial(pr, fd, sp) {
				continue
			}
			return false, nil // another holder receives: wait for more
		}
		if pr.rmode.Load() == 0 {
			return n > 0, nil // a frame (socket mode), or nothing yet
		}
		if pr.rc.Ready() {
			return true, nil
		}
		if n > 0 {
			// A frame another holder's receive is about to read.
			return false, nil
		}
		return pr.rc.Arm(), nil
	}
}

// takeSpecial takes the doorbell or frameSwitch at the head of the
// socket, if this Conn may read the socket now (no other holder of the
// end is receiving).
func (c *Conn) takeSpecial(pr *pipeRing, fd uintptr, sp int32) bool {
	p := c.pipe
	took := false
	if !p.heldR {
		if !pr.rlock.tryLock(shm.Self()) {
			return false
		}
		p.heldR, took = true, true
	}
	defer func() {
		if took {
			unlockPipe(pr.rlock, &p.heldR)
		}
	}()
	if st := pr.rstate.Load(); st != pipeIdle || c.rend > c.rpos {
		return false
	}
	var hdr [4]byte
	if n, err := peekSocket(fd, hdr[:]); err != nil || n != 4 || specialFrame(hdr[:]) != sp {
		return false
	}
	if sp == frameSwitch {
		pr.rmode.Store(1) // before the switch leaves the socket, see recvPipe
	}
	takeSocket(fd, 4)
	return true
}

// pipeWaitReady is Wait's look at an end with rings: whether a message
// is ready now; when not, the next sender rings the doorbell, which
// turns the socket readable.
func (c *Conn) pipeWaitReady(pr *pipeRing) bool {
	ready := false
	pr.use(func() {
		if ready = pr.rc.Ready(); ready {
			return
		}
		if !c.rmu.TryLock() {
			// A receive of this process is in progress: it takes the
			// doorbells.
			ready = pr.rmode.Load() == 1 && pr.rc.Arm()
			return
		}
		defer c.rmu.Unlock()
		c.rc.Control(func(fd uintptr) { ready, _ = c.pipeReady(pr, fd) })
	})
	return ready
}

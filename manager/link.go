//go:build linux

package manager

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/ringconn"
)

// link is the connection between a proxy and the server: a socket, and
// for a client on the server's machine (a unix socket), rings in shared
// memory next to it once the client has asked for them (opUpgrade). A
// request and its reply then cost no system call: a manager Lock step
// between two processes goes from tens of microseconds to a few.
type link struct {
	sock  *mp.Conn
	ring  atomic.Pointer[ringconn.Conn]
	limit int64 // the longest message received on rings, 0 for any
	// maxSend is the longest message the peer accepts (a server's
	// limit, which its hello reply gives), 0 if not known. A longer one
	// is refused here, unsent, so that the connection stays in step.
	maxSend int64
	mem     []byte // the rings' memory, once upgraded (tests play a peer that writes into it)
	// py is the socket of a Python proxy thread's connection once its
	// thread has taken it from sock (see takePySock).
	py     atomic.Pointer[pySock]
	pmu    sync.Mutex // orders Close against takePySock
	closed bool       // Close was called; pmu
}

func newLink(c *mp.Conn) *link { return &link{sock: c} }

// SendBytes sends one message. One longer than maxSend is not sent: the
// error matches mp.ErrMessageTooLong, and the link stays usable.
func (l *link) SendBytes(b []byte) error {
	if l.maxSend > 0 && int64(len(b)) > l.maxSend {
		return fmt.Errorf("%w: a %d-byte request, the manager takes at most %d", mp.ErrMessageTooLong, len(b), l.maxSend)
	}
	if r := l.ring.Load(); r != nil {
		return r.SendBytes(b)
	}
	if p := l.py.Load(); p != nil {
		return p.send(b)
	}
	return l.sock.SendBytes(b)
}

// RecvBytesInto receives one message, as mp.Conn.RecvBytesInto does.
func (l *link) RecvBytesInto(buf []byte, offset int) (int, error) {
	if r := l.ring.Load(); r != nil {
		return r.RecvBytesInto(buf, offset)
	}
	return l.sock.RecvBytesInto(buf, offset)
}

// Close closes the connection; a receive in progress returns.
func (l *link) Close() error {
	l.pmu.Lock()
	l.closed = true
	l.pmu.Unlock()
	if p := l.py.Load(); p != nil {
		p.hangUp()
	}
	if r := l.ring.Load(); r != nil {
		r.Close()
	}
	return l.sock.Close()
}

// useRing moves the link onto rings over mem (see ringconn.New). Only the
// goroutine that receives may call it, between messages.
func (l *link) useRing(mem *mp.RawArray[uint64], first bool) error {
	l.mem = ringMemory(mem)
	r, err := ringconn.New(l.sock, l.mem, first, mem)
	if err != nil {
		return err
	}
	r.SetLimit(l.limit)
	// The client's side (it made the memory) has a goroutine or a few
	// waiting for replies: they sleep on a futex, cheaper than the
	// socket. The server's side has a goroutine per client, which must
	// not each hold a thread: they sleep on the socket, in the runtime's
	// poller. Both poll where polling pays (see ringconn.DefaultSpin),
	// also the server while an operation waits: the client whose Acquire
	// a Release ends a few microseconds later sends its next request at
	// once.
	r.SetFutexSleep(first)
	l.ring.Store(r)
	if l.sock.Closed() {
		r.Close() // closed meanwhile: Close may not have seen the ring
	}
	return nil
}

// newRingMemory returns zeroed shared memory for a link's rings.
func newRingMemory() (*mp.RawArray[uint64], error) {
	return mp.NewRawArray[uint64](ringconn.MemSize / 8)
}

// ringMemory views mem as bytes.
func ringMemory(mem *mp.RawArray[uint64]) []byte {
	words := mem.Slice()
	if len(words) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 8*len(words))
}

//go:build linux

package mp

import (
	"sync/atomic"
	"unsafe"

	"github.com/go-mp/mp/internal/ringconn"
)

// PipeRingInfo is what PipeRingForTest reports of a Pipe end's rings.
type PipeRingInfo struct {
	Sent, Received uint64 // bytes through the ring this end sends on, and the one it receives from
	SendMode       uint32 // 1 once the end's sends go through the ring
	RecvMode       uint32 // 1 once its receives do
	SendState      uint32 // the sending direction's state (pipeIdle...)
	SendLock       uint64 // the owner word of the senders' lock, 0 when free
	Ready          bool   // a message waits in the ring it receives from
	PeerSendState  uint32 // the state of the direction it receives on
	RecvState      uint32 // that direction's receiving state
	PeerSendLock   uint64 // the owner word of that direction's senders' lock
	OutHead        *atomic.Uint64
	InHead, InTail *atomic.Uint64
}

// PipeRingForTest reports c's rings, or ok false if c has none: the test
// then knows whether the fast path is taken.
func PipeRingForTest(c *Conn) (info PipeRingInfo, ok bool) {
	if c.pipe == nil {
		return info, false
	}
	pr := c.pipe.ring.Load()
	if pr == nil {
		return info, false
	}
	mem := pr.mem.arr.e.e[pipeHeader:]
	ringAt := func(first bool) []byte {
		if first {
			return mem
		}
		return mem[ringconn.MemSize/2:]
	}
	word := func(b []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&b[off])) }
	in, out := ringAt(c.pipe.side == 0), ringAt(c.pipe.side != 0)
	info = PipeRingInfo{
		OutHead: word(out, 0), InHead: word(in, 0), InTail: word(in, 64),
		SendMode: pr.wmode.Load(), RecvMode: pr.rmode.Load(), SendState: pr.wstate.Load(),
		SendLock: pr.wlock.owner(), Ready: pr.rc.Ready(), RecvState: pr.rstate.Load(),
	}
	info.Sent, info.Received = info.OutHead.Load(), info.InHead.Load()
	peer := 128 * int(1-c.pipe.side)
	sh := pr.mem.arr.e.s
	info.PeerSendState = sh.u32(peer + pipeOffWState).Load()
	info.PeerSendLock = sh.u64(peer+pipeOffWLock).Load() &^ waitersBit
	return info, true
}

// PipePeerRecvStateForTest returns the receiving state word of the
// direction c sends on (the peer's), for a test that plays a peer
// writing garbage.
func PipePeerRecvStateForTest(c *Conn) *atomic.Uint32 {
	return c.pipe.ring.Load().mem.arr.e.s.u32(128*int(c.pipe.side) + pipeOffRState)
}

// PipeMaxRing is the longest message that goes through a Pipe's ring.
const PipeMaxRing = ringconn.MaxShared

// PipeMarked is the state of a direction whose sender published a marker
// and is sending (or did not send) its frame.
const PipeMarked = pipeMarked

// PipeRingSize is the size of one ring of a Pipe.
const PipeRingSize = ringconn.RingSize

// SetPipeSwitchHookForTest has f run in each send that has sent
// frameSwitch, before it records that; set it in the process that sends.
func SetPipeSwitchHookForTest(f func()) { testHookSwitchSent = f }

// SetPipeMarkerHookForTest has f run in each receive that has taken a
// marker, before the ring's tail moves past it; set it in the process
// that receives.
func SetPipeMarkerHookForTest(f func()) { testHookMarkerTaken = f }

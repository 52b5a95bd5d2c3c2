//go:build linux

package mp

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/shm"
)

// Shared objects (locks, semaphores, values...) live in a memfd mapped by
// every process that uses them. The first bytes of the memory say what the
// object is, so that a handle decoded as the wrong type is refused:
//
//	0  magic  uint32
//	4  kind   uint32
//	8  parameters of the kind (up to headerSize)
//	64 state of the object
const (
	sharedMagic = 0x6f73706d // "mpso"
	headerSize  = 64
)

// Kinds of shared object.
const (
	kindLock uint32 = iota + 1
	kindRLock
	kindSemaphore
	kindEvent
	kindCondition
	kindBarrier
	kindValue
	kindArray
	kindSharedMemory
	kindQueue
)

// shared is the part every shared object has: its mapped memory.
type shared struct {
	seg  *shm.Segment
	kind uint32
}

// newShared maps a new object of the given kind with stateSize bytes of
// state after the header.
func newShared(kind uint32, stateSize int) (shared, error) {
	seg, err := shm.New(kindName(kind), headerSize+stateSize)
	if err != nil {
		return shared{}, err
	}
	seg.Uint32(0).Store(sharedMagic)
	seg.Uint32(4).Store(kind)
	return shared{seg: seg, kind: kind}, nil
}

// marshal encodes the object as a handle whose descriptor travels beside
// the message.
func (s shared) marshal() ([]byte, error) {
	fd := s.seg.FD()
	if fd < 0 {
		return nil, ErrClosed
	}
	return codec.EncodeHandle(codec.HandleShared, fd, s.kind)
}

// unmarshalShared maps the object a handle names and checks its kind.
func unmarshalShared(data []byte, kind uint32) (shared, error) {
	fd, flags, err := codec.DecodeHandle(data, codec.HandleShared)
	if err != nil {
		return shared{}, err
	}
	if flags != kind {
		closeFD(fd)
		return shared{}, fmt.Errorf("mp: a %s arrived where a %s was expected", kindName(flags), kindName(kind))
	}
	seg, err := shm.Open(fd)
	if err != nil {
		return shared{}, err
	}
	if len(seg.Bytes()) < headerSize || seg.Uint32(0).Load() != sharedMagic || seg.Uint32(4).Load() != kind {
		seg.Close()
		return shared{}, fmt.Errorf("mp: descriptor is not a shared %s", kindName(kind))
	}
	return shared{seg: seg, kind: kind}, nil
}

// param returns the 64-bit parameter word i (0..6) of the header.
func (s shared) param(i int) *atomic.Uint64 { return s.seg.Uint64(8 + 8*i) }

// u32 and u64 return state words by offset from the end of the header.
func (s shared) u32(off int) *atomic.Uint32 { return s.seg.Uint32(headerSize + off) }
func (s shared) u64(off int) *atomic.Uint64 { return s.seg.Uint64(headerSize + off) }

// release unmaps the memory in this process; other processes keep theirs.
func (s shared) release() error { return s.seg.Close() }

// autoRelease unmaps the memory once obj is garbage, for objects that are
// never closed.
func autoRelease[T any](obj *T, s shared) {
	runtime.AddCleanup(obj, func(seg *shm.Segment) { seg.Close() }, s.seg)
}

func kindName(k uint32) string {
	switch k {
	case kindLock:
		return "Lock"
	case kindRLock:
		return "RLock"
	case kindSemaphore:
		return "Semaphore"
	case kindEvent:
		return "Event"
	case kindCondition:
		return "Condition"
	case kindBarrier:
		return "Barrier"
	case kindValue:
		return "Value"
	case kindArray:
		return "Array"
	case kindQueue:
		return "Queue"
	case kindSharedMemory:
		return "SharedMemory"
	}
	return fmt.Sprintf("object of kind %d", k)
}

// ---- waiting ----

// spinTime is how long a waiter polls a shared word before it sleeps in
// the kernel: hand-offs between processes often take a few microseconds,
// and waking a sleeping CPU costs more than that. 200 µs also covers the
// other side copying a large message (float_channel: 4.7 -> 5.3 GB/s).
const spinTime = 200 * time.Microsecond

// spin calls try until it succeeds or spinTime has passed.
func spin(try func() bool) bool {
	var until time.Time
	for i := 0; ; i++ {
		if try() {
			return true
		}
		if i&15 == 15 {
			now := time.Now()
			if until.IsZero() {
				until = now.Add(spinTime)
			} else if now.After(until) {
				return false
			}
			runtime.Gosched()
		}
	}
}

// sleeper sleeps on shared words on behalf of one blocking call, waking
// when ctx is done.
type sleeper struct {
	ctx      context.Context
	deadline time.Time
	stop     func() bool
}

// newSleeper prepares to sleep on word: a done ctx wakes every sleeper on
// it, which then sees ctx.Err().
func newSleeper(ctx context.Context, word *atomic.Uint32) *sleeper {
	s := &sleeper{ctx: ctx}
	s.deadline, _ = ctx.Deadline()
	if ctx.Done() != nil {
		s.stop = context.AfterFunc(ctx, func() { futex.WakeAll(word) })
	}
	return s
}

// sleep waits on word while it holds val, for at most max. It returns
// ctx.Err() once ctx is done.
func (s *sleeper) sleep(word *atomic.Uint32, val uint32, max time.Duration) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if !s.deadline.IsZero() {
		if left := time.Until(s.deadline); left < max || max < 0 {
			max = left
		}
		if max <= 0 {
			return context.DeadlineExceeded
		}
	}
	futex.Wait(word, val, max)
	return s.ctx.Err()
}

func (s *sleeper) done() {
	if s.stop != nil {
		s.stop()
	}
}

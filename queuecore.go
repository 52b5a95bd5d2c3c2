package mp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/memcopy"
	"github.com/go-mp/mp/internal/shm"
	"golang.org/x/sys/unix"
)

// A queue's items live in shared memory as a byte stream: a linked list of
// 1 MiB chunks taken from a large sparse memfd. A record is a 4-byte length
// and the encoded item, and may span chunks, so items of any size fit and a
// producer never waits for a reader unless the queue is bounded. Chunks the
// consumers have passed go back to a free stack for reuse; only a few stay
// backed by memory, the rest are punched out.
//
// Producers take turns under one robust mutex, consumers under another.
// Each side publishes its position and item count in one 64-bit store, so a
// process killed in the middle of a Put or a Get leaves the queue
// consistent: an unpublished Put never happened, an unpublished Get never
// took its item.
const (
	chunkShift  = 20
	chunkSize   = 1 << chunkShift
	chunkHeader = 8 // next chunk (slot+1, 0 = none), next free slot
	maxChunks   = 1 << 14
	warmChunks  = 8 // free chunks kept backed by memory
	chunkBase   = chunkSize
	queueState  = 128 // state bytes after the header
)

// A position: chunk slot (16 bits), offset in the chunk (21 bits) and a
// count of items (27 bits, wrapping).
const (
	cntBits = 27
	cntMask = 1<<cntBits - 1
	offMask = 1<<21 - 1
)

func packPos(slot, off int, cnt uint64) uint64 {
	return uint64(slot)<<48 | uint64(off)<<cntBits | cnt&cntMask
}

func unpackPos(p uint64) (slot, off int, cnt uint64) {
	return int(p >> 48), int(p >> cntBits & offMask), p & cntMask
}

// Offsets of the state words after the shared header.
const (
	qPLock       = 0
	qCLock       = 8
	qTail        = 16
	qHead        = 24
	qFreeTop     = 32 // tag<<32 | slot+1
	qFresh       = 40
	qDataSeq     = 48
	qConsWait    = 52
	qSpaceSeq    = 56
	qProdWait    = 60
	qDone        = 64 // JoinableQueue: items marked done, a wrapping count like a position's
	qJoinWait    = 72
	qFreeCount   = 76
	qDoneSeq     = 80
	qParamMax    = 0 // param words
	qParamFlags  = 1
	flagJoinable = 1
)

var (
	// ErrEmpty is returned by TryGet on an empty queue.
	ErrEmpty = errors.New("mp: queue is empty")
	// ErrFull is returned by TryPut on a full queue.
	ErrFull = errors.New("mp: queue is full")
	// ErrQueueHandles is returned by Put for an item that holds a handle
	// (a Conn, Lock...): pass those as Process arguments or over a Conn.
	ErrQueueHandles = errors.New("mp: queue items cannot hold handles (Conn, Lock, ...)")
	// ErrTaskDone is returned by TaskDone called more times than items
	// were put.
	ErrTaskDone = errors.New("mp: TaskDone called more times than items were put")
)

// queueCore is one process's handle on a shared queue.
type queueCore struct {
	s       shared
	mem     []byte
	plock   mutex
	clock   mutex
	tail    *atomic.Uint64
	head    *atomic.Uint64
	freeTop *atomic.Uint64
	fresh   *atomic.Uint64
	dataSeq *atomic.Uint32
	consW   *atomic.Uint32
	spaceSq *atomic.Uint32
	prodW   *atomic.Uint32
	done    *atomic.Uint64
	doneSeq *atomic.Uint32 // bumped when no item is left unfinished
	joinW   *atomic.Uint32
	freeN   *atomic.Uint32
	maxsize uint64

	// state counts the calls in flight, with qClosed set once closed.
	state     atomic.Int64
	drained   chan struct{} // closed when the last call leaves after close
	drainOnce sync.Once
}

const qClosed = 1 << 62

func newQueueCore(maxsize int, joinable bool) (*queueCore, error) {
	if maxsize < 0 || maxsize >= cntMask {
		return nil, fmt.Errorf("mp: queue maxsize %d out of range [0, %d)", maxsize, cntMask)
	}
	s, err := newShared(kindQueue, chunkBase-headerSize+maxChunks*chunkSize)
	if err != nil {
		return nil, err
	}
	s.param(qParamMax).Store(uint64(maxsize))
	if joinable {
		s.param(qParamFlags).Store(flagJoinable)
	}
	q := attachQueue(s)
	// Chunk 0 holds the first records.
	q.fresh.Store(1)
	q.tail.Store(packPos(0, chunkHeader, 0))
	q.head.Store(packPos(0, chunkHeader, 0))
	return q, nil
}

func attachQueue(s shared) *queueCore {
	q := &queueCore{
		s: s, mem: s.seg.Bytes(),
		plock: newMutex(s, qPLock), clock: newMutex(s, qCLock),
		tail: s.u64(qTail), head: s.u64(qHead), freeTop: s.u64(qFreeTop), fresh: s.u64(qFresh),
		dataSeq: s.u32(qDataSeq), consW: s.u32(qConsWait), spaceSq: s.u32(qSpaceSeq), prodW: s.u32(qProdWait),
		done: s.u64(qDone), doneSeq: s.u32(qDoneSeq), joinW: s.u32(qJoinWait), freeN: s.u32(qFreeCount),
		maxsize: s.param(qParamMax).Load(),
		drained: make(chan struct{}),
	}
	autoRelease(q, s)
	return q
}

func (q *queueCore) joinable() bool { return q.s.param(qParamFlags).Load()&flagJoinable != 0 }

// enter marks a call in flight, so that close waits for it to leave.
func (q *queueCore) enter() error {
	if q.state.Add(1)&qClosed != 0 {
		q.exit()
		return ErrClosed
	}
	return nil
}

func (q *queueCore) exit() {
	if q.state.Add(-1) == qClosed {
		q.drainOnce.Do(func() { close(q.drained) })
	}
}

func (q *queueCore) isClosed() bool { return q.state.Load()&qClosed != 0 }

// close ends this process's use of the queue: blocked calls return
// ErrClosed, later ones too, and the memory is unmapped here.
func (q *queueCore) close() error {
	if q.state.Or(qClosed)&qClosed != 0 {
		return nil
	}
	// Wake our own sleepers (and, harmlessly, other processes'). Bumping
	// the sequences keeps one that is about to sleep from sleeping.
	for _, w := range []*atomic.Uint32{q.dataSeq, q.spaceSq, q.doneSeq} {
		w.Add(1)
		futex.WakeAll(w)
	}
	futex.WakeAll(q.plock.low)
	futex.WakeAll(q.clock.low)
	if q.state.Load() != qClosed {
		<-q.drained
	}
	return q.s.release()
}

// count returns the number of items in the queue.
func (q *queueCore) count() uint64 {
	_, _, put := unpackPos(q.tail.Load())
	_, _, taken := unpackPos(q.head.Load())
	return (put - taken) & cntMask
}

func (q *queueCore) chunk(slot int) []byte {
	base := chunkBase + slot*chunkSize
	return q.mem[base : base+chunkSize : base+chunkSize]
}

func (q *queueCore) nextOf(slot int) *atomic.Uint32 {
	return q.s.seg.Uint32(chunkBase + slot*chunkSize)
}
func (q *queueCore) freeLink(slot int) *atomic.Uint32 {
	return q.s.seg.Uint32(chunkBase + slot*chunkSize + 4)
}

// alloc takes a chunk from the free stack or a fresh one.
func (q *queueCore) alloc() (int, error) {
	for {
		top := q.freeTop.Load()
		if s := int(uint32(top)); s != 0 {
			slot := s - 1
			next := q.freeLink(slot).Load()
			if q.freeTop.CompareAndSwap(top, (top>>32+1)<<32|uint64(next)) {
				q.freeN.Add(^uint32(0))
				q.nextOf(slot).Store(0)
				return slot, nil
			}
			continue
		}
		n := q.fresh.Add(1) - 1
		if n >= maxChunks {
			q.fresh.Add(^uint64(0))
			return 0, fmt.Errorf("mp: queue storage exhausted (%d MiB pending)", maxChunks*chunkSize>>20)
		}
		q.nextOf(int(n)).Store(0)
		return int(n), nil
	}
}

// free returns a chunk to the free stack; beyond a few, its memory is
// given back to the system.
func (q *queueCore) free(slot int) {
	if q.freeN.Load() >= warmChunks {
		base := int64(chunkBase + slot*chunkSize)
		unix.Fallocate(q.s.seg.FD(), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, base+4096, chunkSize-4096)
	}
	for {
		top := q.freeTop.Load()
		q.freeLink(slot).Store(uint32(top))
		if q.freeTop.CompareAndSwap(top, (top>>32+1)<<32|uint64(slot+1)) {
			q.freeN.Add(1)
			return
		}
	}
}

// write copies b into the stream at (slot, off), moving to linked or new
// chunks as needed, and returns the position after it.
func (q *queueCore) write(slot, off int, b []byte) (int, int, error) {
	for len(b) > 0 {
		if off == chunkSize {
			next := int(q.nextOf(slot).Load())
			if next == 0 {
				// A producer that died after linking a chunk left it for us.
				ns, err := q.alloc()
				if err != nil {
					return 0, 0, err
				}
				next = ns + 1
				q.nextOf(slot).Store(uint32(next))
			}
			slot, off = next-1, chunkHeader
		}
		k := memcopy.Stream(q.chunk(slot)[off:], b)
		off += k
		b = b[k:]
	}
	return slot, off, nil
}

// read copies len(b) bytes from the stream at (slot, off) and returns the
// position after them and the chunks it left behind.
func (q *queueCore) read(slot, off int, b []byte, passed []int) (int, int, []int) {
	for len(b) > 0 {
		if off == chunkSize {
			passed = append(passed, slot)
			slot, off = int(q.nextOf(slot).Load())-1, chunkHeader
		}
		k := copy(b, q.chunk(slot)[off:])
		off += k
		b = b[k:]
	}
	return slot, off, passed
}

// put appends one encoded item. try makes it fail with ErrFull rather than
// wait for room in a bounded queue.
func (q *queueCore) put(ctx context.Context, item []byte, try bool) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	// TryPut waits for the lock too: another producer mid-put does not
	// make the queue full.
	if _, err := q.plock.lockOr(ctx, shm.Self(), q.isClosed); err != nil {
		return err
	}
	defer q.plock.unlock()
	if err := q.waitRoom(ctx, try); err != nil {
		return err
	}
	slot, off, put := unpackPos(q.tail.Load())
	var hdr [4]byte
	hdr[0], hdr[1], hdr[2], hdr[3] = byte(len(item)), byte(len(item)>>8), byte(len(item)>>16), byte(len(item)>>24)
	slot, off, err := q.write(slot, off, hdr[:])
	if err == nil {
		slot, off, err = q.write(slot, off, item)
	}
	if err != nil {
		return err
	}
	if crashPoint != nil {
		crashPoint(crashPutWritten)
	}
	q.tail.Store(packPos(slot, off, put+1))
	if crashPoint != nil {
		crashPoint(crashPutCommitted)
	}
	q.dataSeq.Add(1)
	if q.consW.Load() > 0 {
		futex.Wake(q.dataSeq, 1)
	}
	return nil
}

// waitRoom waits (holding the producer lock) until a bounded queue has
// room.
func (q *queueCore) waitRoom(ctx context.Context, try bool) error {
	limit := q.maxsize
	if limit == 0 {
		limit = cntMask - 1
	}
	joinable := q.joinable()
	full := func() bool { return q.count() >= limit || joinable && q.unfinished() >= maxUnfinished }
	if !full() {
		return nil
	}
	if try {
		return ErrFull
	}
	if spin(func() bool { return !full() }) {
		return nil
	}
	sl := newSleeper(ctx, q.spaceSq)
	defer sl.done()
	for {
		seq := q.spaceSq.Load()
		if q.isClosed() {
			return ErrClosed
		}
		if !full() {
			return nil
		}
		q.prodW.Add(1)
		if !full() || q.isClosed() {
			q.prodW.Add(^uint32(0))
			continue
		}
		err := sl.sleep(q.spaceSq, seq, -1)
		q.prodW.Add(^uint32(0))
		if err != nil {
			return err
		}
	}
}

// get takes one encoded item and hands it to decode (before the space it
// occupies can be reused: decode must copy what it keeps). try makes it
// fail with ErrEmpty rather than wait for one.
func (q *queueCore) get(ctx context.Context, try bool, decode func([]byte) error) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	if try {
		if q.count() == 0 {
			return ErrEmpty
		}
		if !q.clock.tryLock(shm.Self()) {
			return ErrEmpty
		}
	} else if _, err := q.clock.lockOr(ctx, shm.Self(), q.isClosed); err != nil {
		return err
	}
	defer q.clock.unlock()
	if err := q.waitItem(ctx, try); err != nil {
		return err
	}
	slot, off, taken := unpackPos(q.head.Load())
	var hdr [4]byte
	var passedBuf [2]int
	passed := passedBuf[:0]
	slot, off, passed = q.read(slot, off, hdr[:], passed)
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16 | int(hdr[3])<<24
	var derr error
	if off < chunkSize && n <= chunkSize-off {
		// In one piece: decode it where it lies.
		derr = decode(q.chunk(slot)[off : off+n])
		off += n
	} else {
		item := make([]byte, n)
		slot, off, passed = q.read(slot, off, item, passed)
		derr = decode(item)
	}
	q.head.Store(packPos(slot, off, taken+1))
	for _, p := range passed {
		q.free(p)
	}
	q.spaceSq.Add(1)
	if q.prodW.Load() > 0 {
		futex.WakeAll(q.spaceSq)
	}
	return derr
}

func (q *queueCore) waitItem(ctx context.Context, try bool) error {
	empty := func() bool { return q.count() == 0 }
	if !empty() {
		return nil
	}
	if try {
		return ErrEmpty
	}
	if spin(func() bool { return !empty() }) {
		return nil
	}
	sl := newSleeper(ctx, q.dataSeq)
	defer sl.done()
	for {
		seq := q.dataSeq.Load()
		if q.isClosed() {
			return ErrClosed
		}
		if !empty() {
			return nil
		}
		q.consW.Add(1)
		if !empty() || q.isClosed() {
			q.consW.Add(^uint32(0))
			continue
		}
		err := sl.sleep(q.dataSeq, seq, -1)
		q.consW.Add(^uint32(0))
		if err != nil {
			return err
		}
	}
}

// maxUnfinished is how many items of a JoinableQueue can be put and not
// yet marked done: the count is a difference of two wrapping counts.
const maxUnfinished = cntMask - 1

// unfinished returns how many items of a JoinableQueue were put and not yet
// marked done. It is counted from the count of items put that the tail
// position holds, which a Put publishes with its item in one store: so a
// producer killed in the middle of a Put leaves no item counted that never
// appears, nor one that appears uncounted.
func (q *queueCore) unfinished() uint64 {
	_, _, put := unpackPos(q.tail.Load())
	return (put - q.done.Load()) & cntMask
}

// taskDone and join serve JoinableQueue.
func (q *queueCore) taskDone() error {
	for {
		d := q.done.Load()
		_, _, put := unpackPos(q.tail.Load())
		// Puts only add to put: if an item is unfinished now, it still is
		// when the swap succeeds.
		n := (put - d) & cntMask
		if n == 0 {
			return ErrTaskDone
		}
		if !q.done.CompareAndSwap(d, (d+1)&cntMask) {
			continue
		}
		if n == 1 {
			q.doneSeq.Add(1)
			if q.joinW.Load() > 0 {
				futex.WakeAll(q.doneSeq)
			}
		}
		if n >= maxUnfinished && q.prodW.Load() > 0 {
			// Producers may wait for an item to be done (see waitRoom).
			q.spaceSq.Add(1)
			futex.WakeAll(q.spaceSq)
		}
		return nil
	}
}

func (q *queueCore) join(ctx context.Context) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	if q.unfinished() == 0 || spin(func() bool { return q.unfinished() == 0 }) {
		return nil
	}
	sl := newSleeper(ctx, q.doneSeq)
	defer sl.done()
	for {
		seq := q.doneSeq.Load()
		if q.isClosed() {
			return ErrClosed
		}
		q.joinW.Add(1)
		if q.unfinished() == 0 {
			q.joinW.Add(^uint32(0))
			return nil
		}
		err := sl.sleep(q.doneSeq, seq, -1)
		q.joinW.Add(^uint32(0))
		if err != nil {
			return err
		}
	}
}

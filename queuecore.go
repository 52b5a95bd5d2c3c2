//go:build linux

package mp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/memcopy"
	"github.com/go-mp/mp/internal/shm"
	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/codec"
)

// A queue's items live in shared memory as a byte stream: a linked list of
// 1 MiB chunks taken from a large sparse memfd. A record is a 4-byte length
// and the encoded item, and may span chunks, so items of any size fit and a
// producer never waits for a reader unless the queue is bounded. Chunks the
// consumers have passed go back to a warm stack for reuse, up to a budget
// that grows with the items' size, and beyond it to a stale stack. Both
// stay backed by memory while the queue is busy, so that a stream of items,
// or a backlog draining, reuses the same memory instead of faulting in
// pages just given back (and a consumer catching up does not stop to give
// memory back). A consumer that finds the queue empty punches the stale
// chunks out and moves them to a cold stack, taken last.
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
	// Free chunks kept backed by memory: at least minWarm, or room for the
	// next two items of the size just taken, at most maxWarm.
	minWarm    = 8
	maxWarm    = 64
	chunkBase  = chunkSize
	queueState = 128 // state bytes after the header
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
	qFreeTop     = 32 // warm stack: tag<<32 | slot+1
	qFresh       = 40
	qDataSeq     = 48
	qConsWait    = 52
	qSpaceSeq    = 56
	qProdWait    = 60
	qDone        = 64 // JoinableQueue: items marked done, a wrapping count like a position's
	qJoinWait    = 72
	qFreeCount   = 76 // chunks on the warm stack
	qDoneSeq     = 80
	qColdTop     = 88 // cold stack (punched chunks): tag<<32 | slot+1
	qStaleTop    = 96 // stale stack (beyond the warm budget): tag<<32 | slot+1
	qParamMax    = 0  // param words
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
	ErrQueueHandles = codec.ErrItemHandles
	// ErrTaskDone is returned by TaskDone called more times than items
	// were put.
	ErrTaskDone = errors.New("mp: TaskDone called more times than items were put")
	// ErrItemTooLarge is returned by Put for an item whose encoding takes
	// 4 GiB or more.
	ErrItemTooLarge = errors.New("mp: queue item of 4 GiB or more")
	// errQueueCorrupt is returned by Put or Get when the queue's shared
	// state names a chunk or offset that cannot be: another process wrote
	// it.
	errQueueCorrupt = errors.New("mp: queue state corrupt (a chunk link or offset out of range)")
)

// maxItem is the largest encoded item: its length is stored in 4 bytes.
const maxItem = 1<<32 - 1

// queueCore is one process's handle on a shared queue.
type queueCore struct {
	s       shared
	mem     []byte
	plock   mutex
	clock   mutex
	tail    *atomic.Uint64
	head    *atomic.Uint64
	warm    chunkStack
	stale   chunkStack
	cold    chunkStack
	fresh   *atomic.Uint64
	dataSeq *atomic.Uint32
	consW   *atomic.Uint32
	spaceSq *atomic.Uint32
	prodW   *atomic.Uint32
	done    *atomic.Uint64
	doneSeq *atomic.Uint32 // bumped when no item is left unfinished
	joinW   *atomic.Uint32
	maxsize uint64

	// spare is a large buffer (over 64 KiB) kept for this handle's next
	// Put or Get: see buffer.
	spare atomic.Pointer[bytes.Buffer]

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
		tail: s.u64(qTail), head: s.u64(qHead), fresh: s.u64(qFresh),
		warm: chunkStack{top: s.u64(qFreeTop), n: s.u32(qFreeCount)}, stale: chunkStack{top: s.u64(qStaleTop)},
		cold:    chunkStack{top: s.u64(qColdTop)},
		dataSeq: s.u32(qDataSeq), consW: s.u32(qConsWait), spaceSq: s.u32(qSpaceSeq), prodW: s.u32(qProdWait),
		done: s.u64(qDone), doneSeq: s.u32(qDoneSeq), joinW: s.u32(qJoinWait),
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
	q.spare.Store(nil)
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

// A chunkStack is a lock-free stack of free chunks, linked through their
// free links; its top word holds a tag, bumped by every change, against
// ABA, and the slot+1 of the top chunk (0: empty).
type chunkStack struct {
	top *atomic.Uint64
	n   *atomic.Uint32 // chunks on it, or nil if not counted
}

// pop takes the top chunk of st, if any.
func (q *queueCore) pop(st chunkStack) (int, bool, error) {
	for {
		top := st.top.Load()
		s := int(uint32(top))
		if s == 0 {
			return 0, false, nil
		}
		if s > maxChunks {
			return 0, false, errQueueCorrupt
		}
		slot := s - 1
		next := q.freeLink(slot).Load()
		if st.top.CompareAndSwap(top, (top>>32+1)<<32|uint64(next)) {
			if st.n != nil {
				st.n.Add(^uint32(0))
			}
			return slot, true, nil
		}
	}
}

// push puts chunk slot on st.
func (q *queueCore) push(st chunkStack, slot int) {
	for {
		top := st.top.Load()
		q.freeLink(slot).Store(uint32(top))
		if st.top.CompareAndSwap(top, (top>>32+1)<<32|uint64(slot+1)) {
			if st.n != nil {
				st.n.Add(1)
			}
			return
		}
	}
}

// alloc takes a free chunk: a warm one, else a stale one, else a cold one,
// else a fresh one.
func (q *queueCore) alloc() (int, error) {
	for _, st := range [...]chunkStack{q.warm, q.stale, q.cold} {
		if slot, ok, err := q.pop(st); err != nil || ok {
			if ok {
				q.nextOf(slot).Store(0)
			}
			return slot, err
		}
	}
	n := q.fresh.Add(1) - 1
	if n >= maxChunks {
		q.fresh.Add(^uint64(0))
		return 0, fmt.Errorf("mp: queue storage exhausted (%d MiB pending)", maxChunks*chunkSize>>20)
	}
	q.nextOf(int(n)).Store(0)
	return int(n), nil
}

// warmFor is how many free chunks to keep backed by memory after taking
// an item of n bytes: enough for the next two like it.
func warmFor(n int) int {
	return min(max(2*((n+chunkSize-1)>>chunkShift)+2, minWarm), maxWarm)
}

// free returns a chunk to the warm stack if it holds fewer than keep
// chunks, else to the stale stack.
func (q *queueCore) free(slot, keep int) {
	if int(q.warm.n.Load()) < keep {
		q.push(q.warm, slot)
		return
	}
	q.push(q.stale, slot)
}

// giveBack gives the memory of up to max stale chunks (each a fraction of
// a millisecond) back to the system and moves them to the cold stack, one
// at a time while the queue stays empty, open, and ctx not done: a
// consumer calls it when it finds nothing to take.
func (q *queueCore) giveBack(ctx context.Context, max int) {
	for ; max > 0 && q.count() == 0 && ctx.Err() == nil && !q.isClosed(); max-- {
		slot, ok, err := q.pop(q.stale)
		if !ok || err != nil {
			return
		}
		base := int64(chunkBase + slot*chunkSize)
		unix.Fallocate(q.s.seg.FD(), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, base+4096, chunkSize-4096)
		q.push(q.cold, slot)
	}
}

// posValid reports whether (slot, off), read from shared memory, is a
// place in the stream.
func posValid(slot, off int) bool {
	return slot < maxChunks && off >= chunkHeader && off <= chunkSize
}

// write copies b into the stream at (slot, off), moving to linked or new
// chunks as needed, and returns the position after it.
func (q *queueCore) write(slot, off int, b []byte) (int, int, error) {
	for len(b) > 0 {
		if off == chunkSize {
			next := int(q.nextOf(slot).Load())
			if next > maxChunks {
				return 0, 0, errQueueCorrupt
			}
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

// span walks n bytes of the stream from (slot, off), copying them into dst
// unless it is nil, and returns the position after them and passed with
// the chunks it left behind appended, unless passed is nil. The positions
// and links it follows are in shared memory, so it checks them.
func (q *queueCore) span(slot, off, n int, dst []byte, passed []int) (int, int, []int, error) {
	if !posValid(slot, off) {
		return 0, 0, nil, errQueueCorrupt
	}
	for n > 0 {
		if off == chunkSize {
			if passed != nil {
				passed = append(passed, slot)
			}
			next := int(q.nextOf(slot).Load())
			if next < 1 || next > maxChunks {
				return 0, 0, nil, errQueueCorrupt
			}
			slot, off = next-1, chunkHeader
		}
		k := min(n, chunkSize-off)
		if dst != nil {
			dst = dst[copy(dst[:k], q.chunk(slot)[off:]):]
		}
		off += k
		n -= k
	}
	return slot, off, passed, nil
}

// repeats reports whether a slot appears twice in passed: an item's
// chunks are distinct unless the links read from shared memory loop.
func repeats(passed []int) bool {
	if len(passed) < 2 {
		return false
	}
	var seen [maxChunks / 64]uint64
	for _, s := range passed {
		w, b := s/64, uint64(1)<<(s%64)
		if seen[w]&b != 0 {
			return true
		}
		seen[w] |= b
	}
	return false
}

// put appends one item, encoded as head followed by body (either may be
// empty), so that an item's bytes can be copied into the stream from
// where they lie. try makes it fail with ErrFull rather than wait for room
// in a bounded queue.
func (q *queueCore) put(ctx context.Context, head, body []byte, try bool) error {
	n := len(head) + len(body)
	if n > maxItem {
		return ErrItemTooLarge
	}
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
	if !posValid(slot, off) {
		return errQueueCorrupt
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(n))
	if n <= chunkSize-4-off {
		// The whole record fits in this chunk (most small items do).
		c := q.chunk(slot)[off:]
		copy(c, hdr[:])
		copy(c[4:], head)
		memcopy.Stream(c[4+len(head):], body)
		off += 4 + n
	} else {
		var err error
		for _, b := range [...][]byte{hdr[:], head, body} {
			if slot, off, err = q.write(slot, off, b); err != nil {
				return err
			}
		}
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

// A queueItem is the encoded item Get is taking: n bytes of the stream from
// (slot, off), valid until get's decode returns.
type queueItem struct {
	q         *queueCore
	slot, off int
	n         int
}

// readAt copies the item's bytes from at (at+len(dst) <= n) into dst.
func (it *queueItem) readAt(at int, dst []byte) {
	slot, off := it.slot, it.off
	if at > 0 {
		// The item's chunks were checked when get walked over them.
		slot, off, _, _ = it.q.span(slot, off, at, nil, nil)
	}
	it.q.span(slot, off, len(dst), dst, nil)
}

// inPlace returns the item where it lies, if it lies in one chunk.
func (it *queueItem) inPlace() ([]byte, bool) {
	if it.off < chunkSize && it.n <= chunkSize-it.off {
		return it.q.chunk(it.slot)[it.off : it.off+it.n], true
	}
	return nil, false
}

// get takes one encoded item and hands it to decode (before the space it
// occupies can be reused: decode must copy what it keeps). try makes it
// fail with ErrEmpty rather than wait for one.
func (q *queueCore) get(ctx context.Context, try bool, decode func(queueItem) error) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	if try {
		if q.count() == 0 {
			// A few at a time: a TryGet must not wait long.
			q.giveBack(ctx, 4)
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
	return q.take(decode)
}

// take takes the item at the head, for get, which holds the consumer lock.
// (Apart from get, whose defers then stay cheap: Go runs them inline only
// in a function with few returns.)
func (q *queueCore) take(decode func(queueItem) error) error {
	slot, off, taken := unpackPos(q.head.Load())
	var passedBuf [8]int
	passed := passedBuf[:0]
	var err error
	var hdr [4]byte
	if posValid(slot, off) && off <= chunkSize-len(hdr) {
		// The length lies in this chunk (the common case).
		copy(hdr[:], q.chunk(slot)[off:])
		off += len(hdr)
	} else if slot, off, passed, err = q.span(slot, off, len(hdr), hdr[:], passed); err != nil {
		return err
	}
	it := queueItem{q: q, slot: slot, off: off, n: int(binary.LittleEndian.Uint32(hdr[:]))}
	// Find the item's end (checking its chunks) before decoding it.
	if it.n <= chunkSize-off {
		off += it.n
	} else if slot, off, passed, err = q.span(slot, off, it.n, nil, passed); err != nil {
		return err
	}
	if repeats(passed) {
		// Links that loop would let a length up to 4 GiB pass over a few
		// chunks, and would free one chunk twice.
		return errQueueCorrupt
	}
	derr := decode(it)
	q.head.Store(packPos(slot, off, taken+1))
	keep := warmFor(it.n)
	for _, p := range passed {
		q.free(p, keep)
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
	q.giveBack(ctx, maxChunks)
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

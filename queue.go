//go:build linux

package mp

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/prefault"
)

// Queue is a FIFO queue shared between processes, like Python's
// multiprocessing.Queue. Items are encoded with the default codec into
// shared memory: Put never needs a reader to be running, and a process that
// put items may exit at once without losing them (so Python's join_thread
// and cancel_join_thread have nothing to do here).
//
// Any number of producer and consumer processes may use a Queue passed to
// them as (part of) an argument; items from one producer come out in the
// order it put them, none lost or duplicated. A Queue with maxsize > 0
// holds at most maxsize items, across all processes.
//
// What a killed process can lose: a Put publishes its item in one store to
// shared memory, so the item of a producer killed during Put appears
// exactly once if the kill came after that store (even though Put never
// returned), else never, and never in part; each item that producer put
// before still comes out exactly once and in its order. A consumer killed
// during Get before it took the item leaves it in the queue for others;
// one killed after taking it loses that one item. The queue itself stays
// consistent and the others go on.
//
// Its shared memory grows with the items waiting in it. Of the memory of
// items taken, room for two more items like each one taken (8 MiB at
// least, 64 MiB at most) is kept ready for reuse; the rest is given back
// to the system once a consumer finds the queue empty. What is kept ready
// stays so until the queue is closed.
type Queue[T any] struct {
	c *queueCore
}

// NewQueue returns an empty queue holding at most maxsize items (0: no
// limit but memory).
func NewQueue[T any](maxsize int) (*Queue[T], error) {
	c, err := newQueueCore(maxsize, false)
	if err != nil {
		return nil, err
	}
	return &Queue[T]{c: c}, nil
}

// Put appends v, waiting for room in a bounded queue until ctx is done.
func (q *Queue[T]) Put(ctx context.Context, v T) error { return q.put(ctx, v, false) }

// TryPut appends v if there is room, else returns ErrFull.
func (q *Queue[T]) TryPut(v T) error { return q.put(context.Background(), v, true) }

func (q *Queue[T]) put(ctx context.Context, v T, try bool) error {
	if b, ok := any(v).([]byte); ok {
		// Copied once, from where it lies into the queue.
		var h [9]byte
		return q.c.put(ctx, byteStringHead(h[:0], b), b, try)
	}
	buf := q.c.buffer()
	defer q.c.keepBuffer(buf)
	if err := codec.EncodeItem(buf, v); err != nil {
		return err
	}
	return q.c.put(ctx, buf.Bytes(), nil, try)
}

// Get removes and returns the oldest item, waiting for one until ctx is
// done.
func (q *Queue[T]) Get(ctx context.Context) (T, error) { return q.get(ctx, false) }

// TryGet removes and returns the oldest item if there is one, else returns
// ErrEmpty.
func (q *Queue[T]) TryGet() (T, error) { return q.get(context.Background(), true) }

func (q *Queue[T]) get(ctx context.Context, try bool) (T, error) {
	var v T
	err := q.c.get(ctx, try, func(it queueItem) error { return decodeQueued(it, &v) })
	return v, err
}

// Qsize returns the number of items in the queue (exact at the instant it
// is read; other processes may change it at once).
func (q *Queue[T]) Qsize() int { return int(q.c.count()) }

// Empty reports whether the queue holds no items.
func (q *Queue[T]) Empty() bool { return q.c.count() == 0 }

// Full reports whether a bounded queue holds maxsize items.
func (q *Queue[T]) Full() bool { return q.c.maxsize > 0 && q.c.count() >= q.c.maxsize }

// Close ends this process's use of the queue: calls blocked in it return
// ErrClosed, as do later ones. Other processes' handles are not affected,
// and items already put stay in the queue for them.
func (q *Queue[T]) Close() error { return q.c.close() }

// MarshalCBOR lets a Queue travel to another process inside a message.
func (q *Queue[T]) MarshalCBOR() ([]byte, error) {
	if q.c.isClosed() {
		return nil, ErrClosed
	}
	return q.c.s.marshal()
}

// UnmarshalCBOR receives a Queue sent by mp.
func (q *Queue[T]) UnmarshalCBOR(data []byte) error {
	s, err := unmarshalShared(data, kindQueue)
	if err != nil {
		return err
	}
	q.c = attachQueue(s)
	return nil
}

// SimpleQueue is an unbounded Queue, like Python's SimpleQueue.
type SimpleQueue[T any] struct {
	Queue[T]
}

// NewSimpleQueue returns an empty SimpleQueue.
func NewSimpleQueue[T any]() (*SimpleQueue[T], error) {
	c, err := newQueueCore(0, false)
	if err != nil {
		return nil, err
	}
	return &SimpleQueue[T]{Queue[T]{c: c}}, nil
}

// JoinableQueue is a Queue whose consumers report, with TaskDone, when they
// have finished each item, so that Join can wait for all of them, like
// Python's JoinableQueue.
//
// Its count of unfinished items is kept with the items: the item of a
// producer killed during Put is counted exactly when it appears. An item
// taken by a consumer that died before calling TaskDone stays unfinished
// (Join waits for it) unless another process calls TaskDone for it. At
// most 2^27-1 (about 134 million) items can be unfinished at a time; past
// that, Put waits for a TaskDone and TryPut returns ErrFull.
type JoinableQueue[T any] struct {
	Queue[T]
}

// NewJoinableQueue returns an empty JoinableQueue holding at most maxsize
// items (0: no limit).
func NewJoinableQueue[T any](maxsize int) (*JoinableQueue[T], error) {
	c, err := newQueueCore(maxsize, true)
	if err != nil {
		return nil, err
	}
	return &JoinableQueue[T]{Queue[T]{c: c}}, nil
}

// TaskDone reports that one item taken from the queue has been processed.
// Calling it more times than items were put returns ErrTaskDone.
func (q *JoinableQueue[T]) TaskDone() error { return q.c.taskDone() }

// Join waits until every item put has been marked done with TaskDone, or
// ctx is done.
func (q *JoinableQueue[T]) Join(ctx context.Context) error { return q.c.join(ctx) }

// UnmarshalCBOR receives a JoinableQueue sent by mp.
func (q *JoinableQueue[T]) UnmarshalCBOR(data []byte) error {
	if err := q.Queue.UnmarshalCBOR(data); err != nil {
		return err
	}
	if !q.c.joinable() {
		q.c.close()
		return fmt.Errorf("mp: a Queue arrived where a JoinableQueue was expected")
	}
	return nil
}

var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxSpare is the largest buffer a queue handle keeps for reuse.
const maxSpare = 64 << 20

// buffer returns a buffer to encode or gather one item in: the handle's
// spare if it is free, else one from the pool, which keeps only buffers
// up to 64 KiB.
func (q *queueCore) buffer() *bytes.Buffer {
	// Load first: a Swap on every small item would cost more.
	if q.spare.Load() != nil {
		if b := q.spare.Swap(nil); b != nil {
			return b
		}
	}
	return encodeBuffers.Get().(*bytes.Buffer)
}

// keepBuffer takes back a buffer from buffer. One grown past 64 KiB (up
// to maxSpare) becomes the handle's spare, kept until Close: without it
// every large item would take fresh memory, which the runtime zeroes or
// faults in, and later gives back to the system, to fault in again.
func (q *queueCore) keepBuffer(b *bytes.Buffer) {
	if c := b.Cap(); c > 64<<10 && c <= maxSpare {
		b.Reset()
		if q.spare.CompareAndSwap(nil, b) {
			return
		}
	}
	putEncodeBuffer(b)
}

func putEncodeBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		b.Reset()
		encodeBuffers.Put(b)
	}
}

// decodeQueued decodes the queue item it into v, a pointer.
func decodeQueued(it queueItem, v any) error {
	if p, ok := v.(*[]byte); ok && takeBytes(&it, p) {
		return nil
	}
	if b, ok := it.inPlace(); ok {
		return decodeItem(b, v)
	}
	buf := it.q.buffer()
	defer it.q.keepBuffer(buf)
	buf.Grow(it.n)
	b := buf.AvailableBuffer()[:it.n]
	it.readAt(0, b)
	return decodeItem(b, v)
}

// CBOR's major type and simple value that the byte-slice paths use.
const (
	cborBytes = 2
	cborNull  = 0xf6
)

// byteStringHead appends the head the codec writes before the bytes of b:
// null for a nil slice, else a byte string of len(b). Put writes it and b
// into the queue, so that b is copied once, with no encoding buffer.
func byteStringHead(dst, b []byte) []byte {
	if b == nil {
		return append(dst, cborNull)
	}
	return codec.AppendHead(dst, cborBytes, uint64(len(b)))
}

// takeBytes decodes an item that is a byte string or null into *p as the
// codec would, copying the bytes once from the queue (the codec would
// need them in one piece first, copying a spanning item twice). For any
// other item it returns false and leaves the codec to decode it (or to
// report what is wrong with it).
func takeBytes(it *queueItem, p *[]byte) bool {
	var h [9]byte
	head := h[:min(len(h), it.n)]
	whole, inPlace := it.inPlace()
	if inPlace {
		head = whole[:len(head)]
	} else {
		it.readAt(0, head)
	}
	if len(head) == 1 && head[0] == cborNull {
		*p = nil
		return true
	}
	major, n, hl, ok := codec.ParseHead(head)
	if !ok || major != cborBytes || n != uint64(it.n-hl) {
		return false
	}
	if n == 0 {
		*p = []byte{}
		return true
	}
	prefaulted := n >= prefaultFrom && n <= prefaultTo
	if inPlace && !prefaulted {
		// append allocates without zeroing what it then fills.
		*p = append([]byte(nil), whole[hl:]...)
		return true
	}
	b := make([]byte, n)
	if prefaulted {
		prefault.Bytes(b)
	}
	if inPlace {
		copy(b, whole[hl:])
	} else {
		it.readAt(hl, b)
	}
	*p = b
	return true
}

// Items from 64 KiB to 128 KiB land in heap pages that the runtime's
// scavenger has often just given back to the system, so that copying an
// item in faults in and zeroes its pages one by one (queue_size at 64 KiB
// after a large Map in the same process: 19-29 k items/s; mapping them in
// with one system call first: 31-34). Larger items' pages stay mapped,
// and the call would only cost (256 KiB: 15-21 -> 9-11 k items/s).
const (
	prefaultFrom = prefault.Above
	prefaultTo   = 128 << 10
)

func decodeItem(b []byte, v any) error {
	if err := codec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("mp: decode queue item into %T: %w", v, err)
	}
	return nil
}

//go:build linux

package mp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/futex"
	"github.com/go-mp/mp/internal/ringconn"
)

// A pool and its workers speak a compact binary form of their own: both
// ends are the same binary, and a task's header then costs a few bytes
// and nanoseconds instead of a reflective CBOR pass. Arguments and results
// inside it stay encoded as the target's codec wants (see codec.EncodeChunk).
//
//	task:   uvarint id | flags | uvarint len(target) | target | [uvarint len | key] | argument
//	result: uvarint id | flags | uvarint busy ns | [uvarint len | CBOR error] | result
//
// With wireSplit the argument or result is not inside: it follows as a
// message of its own (see splitAbove).
//
// Tasks and results travel in packs: one message holds one or more of
// them, each as uvarint len(task or result) | task or result, so that a
// batch of small tasks costs one receive in the worker, and a burst of
// small results one receive and one turn of its lock in the pool, rather
// than one each. A task or result with wireSplit ends its pack: its
// argument or result is the next message.

const (
	wireChunk = 1 << iota // the argument is a chunk of items
	wireSplit             // the argument or result follows as its own message
	wireExit              // the worker leaves after this task
	wireErr               // the task failed: an error follows
	wireKey               // the task has a key (see taskMsg.Key)
)

// taskMsg is a task sent to a worker. ID 0 is never used.
type taskMsg struct {
	ID     uint64
	Target string
	Chunk  bool
	Split  bool
	Arg    []byte // aliases the message it was parsed from
	// Key, if set, is the id a cluster gave the task, for its target's
	// ctx (see cluster.go).
	Key string
}

// taskResult is a worker's answer to one task (ID 0: its hello, or its
// initializer's failure).
type taskResult struct {
	ID     uint64
	Result []byte // aliases the message it was parsed from
	Split  bool
	Err    *RemoteError
	Busy   int64 // nanoseconds spent on the task
	Exit   bool  // the worker leaves after this task
}

var errBadPoolMessage = errors.New("mp: malformed pool message")

func flagIf(b bool, f byte) byte {
	if b {
		return f
	}
	return 0
}

func (t *taskMsg) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, t.ID)
	b = append(b, flagIf(t.Chunk, wireChunk)|flagIf(t.Split, wireSplit)|flagIf(t.Key != "", wireKey))
	b = binary.AppendUvarint(b, uint64(len(t.Target)))
	b = append(b, t.Target...)
	if t.Key != "" {
		b = binary.AppendUvarint(b, uint64(len(t.Key)))
		b = append(b, t.Key...)
	}
	if !t.Split {
		b = append(b, t.Arg...)
	}
	return b
}

func (t *taskMsg) parse(b []byte) error {
	id, n := binary.Uvarint(b)
	if n <= 0 || id == 0 || len(b) < n+1 {
		return errBadPoolMessage
	}
	flags := b[n]
	b = b[n+1:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return errBadPoolMessage
	}
	// A worker parses its tasks into one taskMsg: the target's name, most
	// often that of the task before, then costs no allocation.
	target := t.Target
	if name := b[n : n+int(l)]; string(name) != target {
		target = string(name)
	}
	*t = taskMsg{ID: id, Target: target, Chunk: flags&wireChunk != 0, Split: flags&wireSplit != 0}
	b = b[n+int(l):]
	if flags&wireKey != 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return errBadPoolMessage
		}
		t.Key, b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	t.Arg = b
	if t.Split && len(t.Arg) > 0 {
		return errBadPoolMessage
	}
	return nil
}

func (r *taskResult) appendTo(b []byte) ([]byte, error) {
	b = binary.AppendUvarint(b, r.ID)
	b = append(b, flagIf(r.Split, wireSplit)|flagIf(r.Exit, wireExit)|flagIf(r.Err != nil, wireErr))
	b = binary.AppendUvarint(b, uint64(max(r.Busy, 0)))
	if r.Err != nil {
		e, err := codec.Marshal(r.Err)
		if err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	if !r.Split {
		b = append(b, r.Result...)
	}
	return b, nil
}

func (r *taskResult) parse(b []byte) error {
	id, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+1 {
		return errBadPoolMessage
	}
	flags := b[n]
	b = b[n+1:]
	busy, n := binary.Uvarint(b)
	if n <= 0 {
		return errBadPoolMessage
	}
	b = b[n:]
	*r = taskResult{ID: id, Busy: int64(min(busy, 1<<62)), Split: flags&wireSplit != 0, Exit: flags&wireExit != 0}
	if flags&wireErr != 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return errBadPoolMessage
		}
		r.Err = new(RemoteError)
		if err := codec.Unmarshal(b[n:n+int(l)], r.Err); err != nil {
			return fmt.Errorf("%w: %v", errBadPoolMessage, err)
		}
		b = b[n+int(l):]
	}
	r.Result = b
	if r.Split && len(b) > 0 {
		return errBadPoolMessage
	}
	return nil
}

// appendPacked appends msg, a task or result message, to pack.
func appendPacked(pack, msg []byte) []byte {
	pack = binary.AppendUvarint(pack, uint64(len(msg)))
	return append(pack, msg...)
}

// nextPacked returns the first message of pack, and the rest of pack.
func nextPacked(pack []byte) (msg, rest []byte, err error) {
	l, n := binary.Uvarint(pack)
	if n <= 0 || l > uint64(len(pack)-n) {
		return nil, nil, errBadPoolMessage
	}
	end := n + int(l)
	return pack[n:end:end], pack[end:], nil
}

// parsePack parses the results of pack into rs (reused), and checks that
// only the last may be split.
func parsePack(rs []taskResult, pack []byte) ([]taskResult, error) {
	rs = rs[:0]
	for len(pack) > 0 {
		msg, rest, err := nextPacked(pack)
		if err != nil {
			return rs, err
		}
		if len(rs) > 0 && rs[len(rs)-1].Split {
			return rs, errBadPoolMessage
		}
		rs = append(rs, taskResult{})
		if err := rs[len(rs)-1].parse(msg); err != nil {
			return rs, err
		}
		pack = rest
	}
	if len(rs) == 0 {
		return rs, errBadPoolMessage
	}
	return rs, nil
}

// A worker's ledger is memory it shares with its pool, so that the pool
// can tell, once the worker is dead, what it had done: a result kept back
// to go with others in one write (see resultSpool) would otherwise die
// with it, and the pool would not know which task was running.
//
//	0   started    uint64: id of the task the worker runs or ran last,
//	                stored before the task's code runs
//	8   committed  uint64: bytes of result records published from the
//	                records on
//	16  cancelSeq  uint32: bumped by the pool after each cancel request,
//	                a futex word the worker's watcher sleeps on
//	24  cancels    [cancelSlots]uint64: ids of tasks the pool cancelled,
//	                written in turn (see ledger.requestCancel)
//	4120 records   [u32 len(head)][u32 len(body)][head][body], where head
//	                is a result message as it goes on the wire, and body
//	                its result when that travels as a message of its own
//
// The worker writes a record, then stores committed; once it has sent the
// records on its connection it starts again from 0. The pool reads the
// ledger only after the worker has exited, and trusts nothing in it: ids
// are looked up among the tasks it sent, and every length is checked. The
// worker trusts nothing in the cancel requests either: it only compares
// their ids with those of its tasks (ids are never reused in a pool, so a
// slot written over or left from before matches nothing).
const (
	ledgerStarted   = 0
	ledgerCommitted = 8
	ledgerCancelSeq = 16
	ledgerCancels   = 24
	cancelSlots     = 2 * maxPrefetch // see ledger.requestCancel
	ledgerRecords   = ledgerCancels + 8*cancelSlots
	ledgerSize      = 512 << 10
	ledgerRecHead   = 8 // the two lengths
)

// ledger is one side's mapping of a worker's ledger.
type ledger struct {
	mem       *RawArray[byte]
	started   *atomic.Uint64
	committed *atomic.Uint64
	cancelSeq *atomic.Uint32
	cancels   [cancelSlots]*atomic.Uint64
	records   []byte
}

// newLedger makes the ledger of a new worker.
func newLedger() (*ledger, error) {
	mem, err := NewRawArray[byte](ledgerSize)
	if err != nil {
		return nil, err
	}
	return openLedger(mem)
}

// openLedger maps the ledger the pool sent.
func openLedger(mem *RawArray[byte]) (*ledger, error) {
	if mem == nil || mem.Len() != ledgerSize {
		return nil, fmt.Errorf("%w: a worker ledger of the wrong size", errBadPoolMessage)
	}
	seg := mem.e.s.seg
	l := &ledger{mem: mem, started: seg.Uint64(headerSize + ledgerStarted),
		committed: seg.Uint64(headerSize + ledgerCommitted),
		cancelSeq: seg.Uint32(headerSize + ledgerCancelSeq), records: mem.e.e[ledgerRecords:]}
	for i := range l.cancels {
		l.cancels[i] = seg.Uint64(headerSize + ledgerCancels + 8*i)
	}
	return l, nil
}

// requestCancel asks the worker to cancel task id: to skip it if it has
// not started, else to cancel the ctx it runs with. The pool's side,
// called with the pool's lock held (one writer at a time), once per task
// sent (see Pool.cancelSent).
//
// No request for a task the worker still holds is written over: after
// the request for a task X, the pool asks only about tasks the worker
// held then (at most maxPrefetch) or was sent since and still holds (X
// is not done, and the worker runs its tasks in order: at most
// maxPrefetch again), fewer than cancelSlots in all. The ring of 32 slots
// it once had lost requests once a worker held more than 32 cancelled
// tasks, which then ran.
//
// The counter, a uint32, goes from its largest value to cancelSlots, not
// to 0: cancelled reads 0 as "nothing ever cancelled", and fewer than
// cancelSlots as the number of slots written. cancelSlots divides 2^32,
// so that the slots stay in turn across the jump.
func (l *ledger) requestCancel(id uint64) {
	n := l.cancelSeq.Load()
	l.cancels[n%cancelSlots].Store(id)
	next := n + 1
	if next == 0 {
		next = cancelSlots
	}
	l.cancelSeq.Store(next)
	futex.Wake(l.cancelSeq, 1)
}

// cancelSlots must divide 2^32 (see requestCancel): a power of two.
var _ [0]struct{} = [cancelSlots & (cancelSlots - 1)]struct{}{}

// cancelled reports whether the pool asked to cancel task id. The
// worker's side. Only the slots written so far are looked at, the newest
// first.
func (l *ledger) cancelled(id uint64) bool {
	seq := l.cancelSeq.Load()
	if seq == 0 {
		return false // nothing was ever cancelled: the usual case, one load
	}
	for i := range min(seq, cancelSlots) {
		if l.cancels[(seq-1-i)%cancelSlots].Load() == id {
			return true
		}
	}
	return false
}

// watchCancels calls check each time the pool asks for a cancellation, for
// as long as the process lives: a goroutine of the worker's.
func (l *ledger) watchCancels(check func()) {
	for {
		seq := l.cancelSeq.Load()
		check()
		futex.Wait(l.cancelSeq, seq, -1)
	}
}

func (l *ledger) close() { l.mem.Close() }

// ledgerRecord is a result found in a dead worker's ledger.
type ledgerRecord struct {
	res taskResult
	out []byte // the result, in the ledger's memory
}

// results returns the result records published, stopping at the first
// that does not parse.
func (l *ledger) results() []ledgerRecord {
	recs := l.records[:min(l.committed.Load(), uint64(len(l.records)))]
	var out []ledgerRecord
	for len(recs) >= ledgerRecHead {
		hl := uint64(binary.LittleEndian.Uint32(recs))
		bl := uint64(binary.LittleEndian.Uint32(recs[4:]))
		recs = recs[ledgerRecHead:]
		if hl+bl > uint64(len(recs)) {
			break
		}
		var r ledgerRecord
		if r.res.parse(recs[:hl]) != nil || r.res.Split != (bl > 0) {
			break
		}
		r.out = r.res.Result
		if r.res.Split {
			r.out = recs[hl : hl+bl]
		}
		out = append(out, r)
		recs = recs[hl+bl:]
	}
	return out
}

// A pool and each of its workers talk over rings in shared memory (see
// internal/ringconn): a task or a result then costs two copies instead of
// a system call on each side. The socket beside the rings is the doorbell
// of a side that sleeps, and its end tells each side that the other has
// gone, even killed. What a worker wrote into its ring before it died
// stays readable there, as it would in a socket: the pool's reader takes
// it to the end before it looks at the ledger (see Pool.lost).

// newWorkerLink returns the pool's side of a new worker's link, over new
// ring memory; the worker's socket and the memory go to the worker in its
// workerArgs (see openWorkerLink). Closing the pool's side unmaps the
// memory there.
func newWorkerLink() (*ringconn.Conn, *Conn, *RawArray[byte], error) {
	a, b, err := socketPipe(true)
	if err != nil {
		return nil, nil, nil, err
	}
	mem, err := NewRawArray[byte](ringconn.MemSize)
	if err == nil {
		var r *ringconn.Conn
		if r, err = ringconn.New(a, mem.e.e, true, mem); err == nil {
			return r, b, mem, nil
		}
		mem.Close()
	}
	a.Close()
	b.Close()
	return nil, nil, nil, err
}

// openWorkerLink returns the worker's side of its link. The worker trusts
// nothing the pool sent it: memory of the wrong size is refused.
func openWorkerLink(sock *Conn, mem *RawArray[byte]) (*ringconn.Conn, error) {
	if mem == nil || mem.Len() != ringconn.MemSize {
		return nil, fmt.Errorf("%w: worker ring memory of the wrong size", errBadPoolMessage)
	}
	r, err := ringconn.New(sock, mem.e.e, false, mem)
	if err != nil {
		return nil, err
	}
	// The worker has one goroutine waiting for tasks: it sleeps on a
	// futex, cheaper than the socket (see ringconn.Conn.SetFutexSleep).
	r.SetFutexSleep(true)
	return r, nil
}

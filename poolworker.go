//go:build linux

package mp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/prefault"
	"github.com/go-mp/mp/internal/ringconn"
)

// A pool worker is a child running poolWorker: it takes tasks from its Conn
// (the pool may send several at once), runs the registered target each
// names, one at a time, and sends back the results (see resultSpool), until
// its Conn reaches EOF (the pool is done with it) or it has run its quota
// of tasks or outgrown its memory ceiling.

// splitAbove is the size from which a task's argument or result travels
// as a message of its own.
const splitAbove = 4 << 10

type workerArgs struct {
	Conn     *Conn           // the doorbell and end of the ring link (see openWorkerLink)
	Ring     *RawArray[byte] // the link's rings
	Init     string          // initializer target, "" for none
	InitArg  cbor.RawMessage
	MaxTasks int
	MaxRSS   uint64
	Ledger   *RawArray[byte] // see ledger
	Slot     int             // see WorkerID
	Fin      string          // finalizer target, "" for none
	FinArg   cbor.RawMessage
}

var poolWorker = RegisterProcCtx("mp.poolWorker", runPoolWorker)

// errInit marks an initializer's failure, which makes the pool unusable;
// errFin a finalizer's.
var (
	errInit = errors.New("mp: pool initializer failed")
	errFin  = errors.New("mp: pool finalizer failed")
)

// runPoolWorker serves the pool; ctx is cancelled when the pool's process
// ends, and with it the task running.
func runPoolWorker(ctx context.Context, a workerArgs) (err error) {
	workerSlot.Store(int32(a.Slot) + 1)
	conn, err := openWorkerLink(a.Conn, a.Ring)
	if err != nil {
		a.Conn.Close()
		if a.Ring != nil {
			a.Ring.Close()
		}
		return err
	}
	defer conn.Close()
	if testHookWorkerLink != nil {
		testHookWorkerLink(a.Conn, a.Ring.e.e)
	}
	// The ledger stays mapped until the process exits: the cancel watcher
	// reads it to the end (unmapping it under the watcher would fault).
	led, err := openLedger(a.Ledger)
	if err != nil {
		return err
	}
	batch := newResultSpool(conn, led)
	defer batch.stop()
	if a.Init != "" {
		if err := runCall(ctx, a.Init, a.InitArg, errInit); err != nil {
			// Tell the pool, which stops starting workers that would fail too.
			batch.add(&taskResult{Err: err}, nil)
			batch.flush()
			return nil
		}
	}
	if a.Fin != "" {
		// Every return from here on is the worker leaving on its own; a
		// killed worker runs nothing. Its results go first: the pool
		// waits for them, not for the finalizer.
		defer func() {
			batch.flush()
			if ferr := runCall(ctx, a.Fin, a.FinArg, errFin); ferr != nil && err == nil {
				err = ferr
			}
		}()
	}
	batch.add(&taskResult{}, nil) // hello: ready for tasks
	var buf bytes.Buffer
	// A buffer for large arguments, mapped in at once rather than a fault
	// per page when the first large task comes (see internal/prefault).
	// Results are copied out of it as they are published, so it serves
	// every task.
	argBuf := make([]byte, 256<<10)
	prefault.Bytes(argBuf)
	// Packs of tasks are received into taskBuf, the tasks' arguments
	// (which alias it) used up before the next pack: a small argument is
	// inside its task's message (see splitAbove).
	taskBuf := make([]byte, 16<<10)
	var pack []byte // the tasks of the last pack not yet taken
	running := &runningTask{led: led}
	go led.watchCancels(running.check)
	var t taskMsg
	// ended is when the last task ended, if the worker has not waited
	// since (else noTime): the next task's clock starts there, one
	// reading of the clock per task instead of two when tasks come back
	// to back. Times are read as time.Since(epoch), from the monotonic
	// clock alone: time.Now reads the wall clock too, which doubles the
	// cost (50 -> 100 ns on this project's machines, a fifth of what a
	// worker spends on a small task).
	epoch := time.Now()
	const noTime = -1
	ended := time.Duration(noTime)
	for done := 0; ; {
		switch {
		case len(pack) > 0 || conn.Buffered():
			batch.holdFor(holdResults)
		default:
			// No task is waiting here: send what we hold before we wait.
			if batch.flush() != nil {
				return nil
			}
			ended = noTime
		}
		if len(pack) == 0 {
			var nextBuf []byte
			var rerr error
			if pack, nextBuf, rerr = recvInto(conn, taskBuf); rerr != nil {
				return nil // the pool closed our connection
			}
			if cap(nextBuf) <= 64<<10 {
				taskBuf = nextBuf
			}
		}
		msg, rest, err := nextPacked(pack)
		if err != nil {
			return nil // not from our pool: leave, and the pool sees us lost
		}
		if pack = rest; t.parse(msg) != nil || t.Split && len(pack) > 0 {
			return nil
		}
		arg := t.Arg
		if t.Split {
			if arg, argBuf, err = recvInto(conn, argBuf); err != nil {
				return nil
			}
			ended = noTime // its argument may have kept us waiting
		}
		// From here on, if this process dies, the pool fails this task
		// rather than run it again elsewhere: the task runs at most once.
		// Stored before the cancel requests are read: a pool that cancels
		// the task then either sees it started (and kills this worker if
		// it runs on) or is heard here.
		led.started.Store(t.ID)
		res := taskResult{ID: t.ID}
		var out []byte
		if led.cancelled(t.ID) {
			// Cancelled before it started: it never runs. Its caller has
			// its answer already; this one frees the task's place, and
			// counts toward MaxTasks as the pool counts it.
			res.Err = NewRemoteError(context.Canceled)
		} else {
			start := ended
			if start == noTime {
				start = time.Since(epoch)
			}
			buf.Reset()
			out, res.Err = running.run(ctx, t, arg, &buf)
			ended = time.Since(epoch)
			res.Busy = int64(ended - start)
		}
		done++
		res.Exit = (a.MaxTasks > 0 && done >= a.MaxTasks) || (a.MaxRSS > 0 && rss() > a.MaxRSS)
		var big []byte
		if res.Err == nil {
			if len(out) > splitAbove {
				res.Split, big = true, out
			} else {
				res.Result = out
			}
		}
		if batch.add(&res, big) != nil {
			return nil
		}
		if res.Exit {
			batch.flush()
			return nil
		}
		if buf.Cap() > 1<<20 {
			buf = bytes.Buffer{}
		}
	}
}

// receiver is a connection that receives into a buffer: a Conn, or a
// ringconn.Conn.
type receiver interface {
	RecvBytesInto(buf []byte, offset int) (int, error)
}

// testHookWorkerLink, if a test sets it (at init, in the worker too), is
// given a worker's socket and ring memory as the worker starts, for test
// targets that play a hostile worker.
var testHookWorkerLink func(sock *Conn, mem []byte)

// recvInto receives a bytes message into buf if it fits, else into new
// memory, which it returns as the buffer to use next time.
func recvInto(c receiver, buf []byte) (msg, next []byte, err error) {
	n, err := c.RecvBytesInto(buf[:cap(buf)], 0)
	if err != nil {
		// Only here: errors.As's target escapes, an allocation per
		// message if it were declared for every receive.
		var short *BufferTooShortError
		if errors.As(err, &short) {
			return short.Message, short.Message, nil
		}
		return nil, nil, err
	}
	return buf[:n], buf, nil
}

// resultSpool publishes a worker's results in its ledger the moment they
// exist, and sends them to the pool in groups: while the worker's next
// task is already here, results wait to go in one write, as one pack (see
// appendPacked): one system call, one wake-up of the pool's reader, one
// receive there for many small tasks. A timer sends them anyway after
// holdResults, so that a slow task does not hold up the results of the
// quick ones before it. Results are sent before the worker waits for a
// task, so one task at a time goes back at once.
//
// A result waiting here is in the ledger, so it outlives the worker: if
// the worker dies, the pool finds it there (see Pool.lost). A result too
// large for the ledger is sent at once instead, before the worker starts
// its next task.
type resultSpool struct {
	conn  *ringconn.Conn
	led   *ledger
	mu    sync.Mutex
	used  int        // bytes of records in the ledger
	n     int        // results held
	pack  []byte     // their messages, packed (see appendPacked)
	cuts  []spoolCut // where a pack ends with a split result
	msgs  [][]byte   // flush's, kept for the next
	head  []byte     // encoding buffer
	timer *time.Timer
	armed bool  // the timer runs
	err   error // the first failed write: the pool is gone
}

// spoolCut ends a pack at end, in resultSpool.pack, after a split result
// whose result, body, follows as a message of its own.
type spoolCut struct {
	end  int
	body []byte // in the ledger
}

// holdResults is the longest a result waits for others to go with it.
const holdResults = 200 * time.Microsecond

// flushAbove is how many bytes of results are sent without waiting, and
// flushCount how many results.
const (
	flushAbove = 64 << 10
	flushCount = 16
)

func newResultSpool(c *ringconn.Conn, led *ledger) *resultSpool {
	b := &resultSpool{conn: c, led: led}
	b.timer = time.AfterFunc(time.Hour, func() { b.flush() })
	b.timer.Stop()
	return b
}

// add publishes res (with big, its result sent as a message of its own)
// in the ledger, and sends it once enough results are held.
func (b *resultSpool) add(res *taskResult, big []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	head, err := res.appendTo(b.head[:0])
	if err != nil {
		return err
	}
	if cap(head) <= 64<<10 {
		b.head = head
	}
	need := ledgerRecHead + len(head) + len(big)
	if b.used+need > len(b.led.records) && b.flushLocked() != nil {
		return b.err
	}
	if need > len(b.led.records) {
		// A pack of its own, the spool empty since the flush above.
		b.pack = appendPacked(b.pack[:0], head)
		msgs := [][]byte{b.pack}
		if len(big) > 0 {
			msgs = append(msgs, big)
		}
		b.err = b.conn.SendBatch(msgs)
		b.pack = b.pack[:0]
		return b.err
	}
	rec := b.led.records[b.used : b.used+need]
	binary.LittleEndian.PutUint32(rec, uint32(len(head)))
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(big)))
	copy(rec[ledgerRecHead:], head)
	copy(rec[ledgerRecHead+len(head):], big)
	b.used += need
	b.led.committed.Store(uint64(b.used)) // published: the record is whole
	b.pack = appendPacked(b.pack, head)
	if len(big) > 0 {
		b.cuts = append(b.cuts, spoolCut{end: len(b.pack), body: rec[ledgerRecHead+len(head):]})
	}
	b.n++
	if b.used >= flushAbove || b.n >= flushCount {
		return b.flushLocked()
	}
	return nil
}

// holdFor makes sure that the results held now are sent within d.
func (b *resultSpool) holdFor(d time.Duration) {
	b.mu.Lock()
	if b.n > 0 && !b.armed {
		// Armed once per batch: resetting a timer can wake a sleeping
		// thread to look at it, which costs more than a small task.
		b.armed = true
		b.timer.Reset(d)
	}
	b.mu.Unlock()
}

// flush sends the results held.
func (b *resultSpool) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *resultSpool) flushLocked() error {
	if b.n == 0 || b.err != nil {
		return b.err
	}
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	msgs, start := b.msgs[:0], 0
	for _, c := range b.cuts {
		msgs = append(msgs, b.pack[start:c.end], c.body)
		start = c.end
	}
	if start < len(b.pack) {
		msgs = append(msgs, b.pack[start:])
	}
	b.err = b.conn.SendBatch(msgs)
	// Only now, with the results in the ring (which the pool reads to the
	// end even if this process dies), may the ledger's records be written
	// over.
	if b.err == nil {
		b.led.committed.Store(0)
		b.used = 0
	}
	clear(msgs)
	clear(b.cuts)
	b.msgs, b.cuts, b.n = msgs[:0], b.cuts[:0], 0
	if cap(b.pack) <= 64<<10 {
		b.pack = b.pack[:0]
	} else {
		b.pack = nil // a large error's: do not keep its memory
	}
	return b.err
}

// stop ends the timer; results not sent stay in the ledger.
func (b *resultSpool) stop() { b.timer.Stop() }

// runCall runs the registered call of a worker's initializer or
// finalizer; a failure's message starts with role's.
func runCall(ctx context.Context, name string, arg []byte, role error) *RemoteError {
	e, ok := lookup(name)
	if !ok {
		return NewRemoteError(fmt.Errorf("%w %q in this binary", ErrUnknownTarget, name))
	}
	var buf bytes.Buffer
	_, rerr := call(func() (any, error) {
		_, err := e.task(ctx, arg, false, &buf)
		return nil, err
	})
	if rerr != nil {
		rerr.Process, rerr.Pid = CurrentProcess().Name, os.Getpid()
		rerr.Message = role.Error() + ": " + rerr.Message
	}
	return rerr
}

// runningTask is the task a worker runs, as its cancel watcher sees it.
type runningTask struct {
	led    *ledger
	mu     sync.Mutex
	id     uint64             // 0 between tasks
	cancel context.CancelFunc // of its ctx, for a target that sees it
	// The target of the task before, looked up: tasks mostly come
	// with the same target. Read and written by the worker's loop only.
	last      string
	lastEntry *entry
}

// run runs t with a ctx of its own, which the pool may cancel (see check),
// if its target sees it.
func (r *runningTask) run(ctx context.Context, t taskMsg, arg []byte, buf *bytes.Buffer) ([]byte, *RemoteError) {
	e := r.lastEntry
	if e == nil || t.Target != r.last {
		var ok bool
		if e, ok = lookup(t.Target); !ok {
			return nil, NewRemoteError(fmt.Errorf("%w %q in this binary", ErrUnknownTarget, t.Target))
		}
		r.last, r.lastEntry = t.Target, e
	}
	if !e.seesCtx {
		return runTask(ctx, e, t, arg, buf) // only a kill stops it
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.id, r.cancel = t.ID, cancel
	r.mu.Unlock()
	r.check() // a request that came before the task was set here
	out, rerr := runTask(ctx, e, t, arg, buf)
	r.mu.Lock()
	r.id, r.cancel = 0, nil
	r.mu.Unlock()
	return out, rerr
}

// check cancels the running task's ctx if the pool asked for it.
func (r *runningTask) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.id != 0 && r.led.cancelled(r.id) {
		r.cancel()
	}
}

// runTask runs t, a task of e, and returns its encoded result (see
// entry.task).
func runTask(ctx context.Context, e *entry, t taskMsg, arg []byte, buf *bytes.Buffer) ([]byte, *RemoteError) {
	var out []byte
	if t.Key != "" {
		ctx = withTaskKey(ctx, t.Key)
	}
	_, rerr := call(func() (any, error) {
		var err error
		out, err = e.task(ctx, arg, t.Chunk, buf)
		return nil, err
	})
	if rerr != nil {
		me := CurrentProcess()
		rerr.Process, rerr.Pid = me.Name, me.Pid
	}
	return out, rerr
}

// rss returns the resident memory of this process in bytes.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

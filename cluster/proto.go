//go:build linux

package cluster

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// Names on the NATS side. Tasks and results are kept in two work-queue
// streams with file storage:
//
//	mp.task.POOL.FP.INST-JOB.INDEX   a task, taken by the durable
//	                                 consumer mpw_POOL_FP (one per pool
//	                                 name and fingerprint: work-queue
//	                                 streams refuse overlapping filters)
//	mp.res.INST                      a result, read by the pool INST
//	                                 through its durable consumer mpr_INST
//	                                 (mpr_INST_N once made anew: see
//	                                 session.readResults)
//
// and on core NATS (lost messages cost nothing but time):
//
//	mp.cancel.POOL                   stop a job's running tasks, or
//	                                 drop them (see cancelMsg)
//	mp.hb.POOL.FP                    a worker's heartbeat
//	mp.direct.INST                   a small result, sent to its pool as a
//	                                 request; stored in the stream (mp.res.INST)
//	                                 only if the pool does not answer
const (
	taskStream   = "MP_TASKS"
	resultStream = "MP_RESULTS"
	taskPrefix   = "mp.task."
	resPrefix    = "mp.res."
	cancelPrefix = "mp.cancel."
	hbPrefix     = "mp.hb."
	directPrefix = "mp.direct."
)

// directMax is the largest result a worker sends directly to its pool,
// over core NATS: the pool has it one stream delivery sooner. The message
// carries, in its header ackToHeader, the subject that acknowledges the
// task's delivery: the pool acknowledges the task and answers
// (answerAcked) as it takes the result, or answers answerTook when it
// took the result without acknowledging the task (a subject that is not
// a delivery of the pool's tasks' consumer, see session.ackPrefix): the
// worker acknowledges it then. Any other answer, or none in time, and
// the worker stores the result in the stream, and acknowledges the task
// only once the stream has it: the pool is gone, slow, or away from the
// server (the server itself then answers, "503 no responders", as the
// result's subject has no subscriber), or the message was lost. A
// larger result goes through the stream.
const directMax = 64 << 10

// ackToHeader is the header of a result sent directly that gives the
// subject acknowledging its task (jsAckPrefix...).
const (
	ackToHeader = "Mp-Ack-To"
	jsAckPrefix = "$JS.ACK."
)

// The pool's answers to a result sent directly: it took the result and
// acknowledged the task (answerAcked), or took it only (answerTook).
var (
	answerAcked = []byte("acked")
	answerTook  = []byte("took")
)

func taskFilter(pool, fp string) string { return taskPrefix + pool + "." + fp + ".>" }

// instSubject starts the subjects of a pool instance's tasks.
func instSubject(pool, fp, inst string) string {
	return taskPrefix + pool + "." + fp + "." + inst + "-"
}

func jobSubject(pool, fp, inst string, job uint64) string {
	return instSubject(pool, fp, inst) + strconv.FormatUint(job, 10)
}

// taskDurablePrefix starts the name of each tasks' durable consumer.
const taskDurablePrefix = "mpw_"

func taskDurable(pool, fp string) string { return taskDurablePrefix + pool + "_" + fp }

// taskAckPrefix starts the reply subjects of the deliveries of the tasks'
// consumer of pool and fp (the subjects that acknowledge them). The
// server refuses a client's message with such a reply: only its
// deliveries have one.
func taskAckPrefix(pool, fp string) string {
	return jsAckPrefix + taskStream + "." + taskDurable(pool, fp) + "."
}

// resultDurable names the consumer of a pool instance's results, the
// gen-th made (see session.readResults).
func resultDurable(inst string, gen int) string {
	if gen == 0 {
		return "mpr_" + inst
	}
	return "mpr_" + inst + "_" + strconv.Itoa(gen)
}

// ErrMalformed is matched (errors.Is) by the error of a message that
// does not parse: not from a worker or pool of the same build, or
// damaged. A malformed result that names its task (a task's error that
// does not decode, a part of a chunk with another number of results than
// items) fails that task with it; another is dropped (and logged).
var ErrMalformed = errors.New("cluster: malformed message")

// maxInst bounds a pool instance's name (a nuid, 22 letters and digits)
// read from a message.
const maxInst = 64

// validInst reports whether inst, read from a message, may be a pool
// instance's name: a worker makes subjects of it (where the task's result
// goes) and keeps it (its ledger of cancellations). Another name is a
// peer's, never a pool's: one longer than the server takes in a subject
// made it close the worker's connection for good, one with a space or a
// wildcard made subjects that the result never reached, and a long one
// made the ledger hold megabytes per cancellation.
func validInst(inst string) bool {
	if inst == "" || len(inst) > maxInst {
		return false
	}
	for i := range len(inst) {
		if c := inst[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// taskMsg is a task in the stream.
//
//	version | flags | uvarint timeout ns | str target | str inst | uvarint job | uvarint index | argument
//
// where str is a uvarint length and the bytes.
type taskMsg struct {
	Chunk   bool
	Timeout int64
	Target  string
	Inst    string // the pool's instance: its results go to mp.res.INST
	Job     uint64
	Index   uint64
	Arg     []byte // aliases the message parsed
}

const (
	protoVersion = 1
	flagChunk    = 1
)

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendHead appends the task's header, everything but its argument.
func (t *taskMsg) appendHead(b []byte) []byte {
	flags := byte(0)
	if t.Chunk {
		flags |= flagChunk
	}
	b = append(b, protoVersion, flags)
	b = binary.AppendUvarint(b, uint64(max(t.Timeout, 0)))
	b = appendStr(b, t.Target)
	b = appendStr(b, t.Inst)
	b = binary.AppendUvarint(b, t.Job)
	return binary.AppendUvarint(b, t.Index)
}

// reader reads what append* wrote, remembering the first failure.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) str() string {
	l := r.uvarint()
	if r.bad || l > uint64(len(r.b)) {
		r.bad = true
		return ""
	}
	s := string(r.b[:l])
	r.b = r.b[l:]
	return s
}

func (t *taskMsg) parse(b []byte) error {
	r := reader{b: b}
	if r.byte() != protoVersion {
		return ErrMalformed
	}
	flags := r.byte()
	timeout := r.uvarint()
	*t = taskMsg{Chunk: flags&flagChunk != 0, Timeout: int64(min(timeout, 1<<62)), Target: r.str(), Inst: r.str()}
	t.Job = r.uvarint()
	t.Index = r.uvarint()
	if r.bad || t.Target == "" || !validInst(t.Inst) {
		return ErrMalformed
	}
	t.Arg = r.b
	return nil
}

// Kinds of result.
const (
	resOK      = iota // the encoded result follows
	resError          // the target returned an error or panicked: a CBOR *mp.RemoteError follows
	resTimeout        // the task ran past its timeout: the message follows
	resLost           // the task's worker died on its last attempt: the message follows
	// resCancelled: a cancellation stopped the task, or had its worker
	// skip it (nothing follows). The pool drops it, having cancelled the
	// task itself, unless the cancellation was not its own.
	resCancelled
)

// resultMsg is a task's outcome, sent to the pool that gave it.
//
//	version | uvarint job | uvarint index | kind | payload
type resultMsg struct {
	Job     uint64
	Index   uint64
	Kind    byte
	Payload []byte // aliases the message parsed
}

func (m *resultMsg) appendTo(b []byte) []byte {
	b = append(b, protoVersion)
	b = binary.AppendUvarint(b, m.Job)
	b = binary.AppendUvarint(b, m.Index)
	b = append(b, m.Kind)
	return append(b, m.Payload...)
}

func (m *resultMsg) parse(b []byte) error {
	r := reader{b: b}
	if r.byte() != protoVersion {
		return ErrMalformed
	}
	*m = resultMsg{Job: r.uvarint(), Index: r.uvarint(), Kind: r.byte()}
	if r.bad || m.Kind > resCancelled {
		return ErrMalformed
	}
	m.Payload = r.b
	return nil
}

// cancelMsg asks the workers to stop a job's running task Idx, or all
// its running tasks; with Drop, only to drop it: a worker skips it if it
// takes it afterwards (as for a stop, see cancelLedger), but lets it run
// to its end if it runs.
//
//	version | str inst | uvarint job | uvarint Idx+1, or 0 for all
//
// where version is protoVersion for a stop and cancelDropVersion for a
// drop: a worker that predates drops reads version protoVersion only, so
// it ignores a drop rather than take it for a stop (a flag after the
// fields would have been read as one, as it ignores bytes left over, and
// it would have stopped the running tasks that a drop lets run).
type cancelMsg struct {
	Inst string
	Job  uint64
	All  bool
	Idx  uint64
	Drop bool
}

// cancelDropVersion starts a cancelMsg that drops (see cancelMsg).
const cancelDropVersion = 2

func (m *cancelMsg) appendTo(b []byte) []byte {
	version := byte(protoVersion)
	if m.Drop {
		version = cancelDropVersion
	}
	b = append(b, version)
	b = appendStr(b, m.Inst)
	b = binary.AppendUvarint(b, m.Job)
	if m.All {
		return binary.AppendUvarint(b, 0)
	}
	return binary.AppendUvarint(b, m.Idx+1)
}

func (m *cancelMsg) parse(b []byte) error {
	r := reader{b: b}
	version := r.byte()
	if version != protoVersion && version != cancelDropVersion {
		return ErrMalformed
	}
	*m = cancelMsg{Inst: r.str(), Job: r.uvarint(), Drop: version == cancelDropVersion}
	i := r.uvarint()
	if r.bad || !validInst(m.Inst) {
		return ErrMalformed
	}
	if i == 0 {
		m.All = true
	} else {
		m.Idx = i - 1
	}
	return nil
}

// heartbeat is a worker's sign of life, every heartbeatEvery.
//
//	version | str worker id | uvarint slots
//
// with an id of 1 to maxWorkerID bytes and at most 2^20 slots.
type heartbeat struct {
	ID    string
	Slots uint64
}

func (h *heartbeat) appendTo(b []byte) []byte {
	b = append(b, protoVersion)
	b = appendStr(b, h.ID)
	return binary.AppendUvarint(b, h.Slots)
}

func (h *heartbeat) parse(b []byte) error {
	r := reader{b: b}
	if r.byte() != protoVersion {
		return ErrMalformed
	}
	*h = heartbeat{ID: r.str(), Slots: r.uvarint()}
	if r.bad || len(r.b) != 0 || h.Slots > 1<<20 || h.ID == "" || len(h.ID) > maxWorkerID {
		return ErrMalformed
	}
	return nil
}

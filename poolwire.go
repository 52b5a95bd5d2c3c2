package mp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A pool and its workers speak a compact binary form of their own: both
// ends are the same binary, and a task's header then costs a few bytes
// and nanoseconds instead of a reflective CBOR pass. Arguments and results
// inside it stay encoded as the target's codec wants (see chunkcodec.go).
//
//	task:   uvarint id | flags | uvarint len(target) | target | argument
//	result: uvarint id | flags | uvarint busy ns | [uvarint len | CBOR error] | result
//
// With wireSplit the argument or result is not inside: it follows as a
// message of its own (see splitAbove).

const (
	wireChunk = 1 << iota // the argument is a chunk of items
	wireSplit             // the argument or result follows as its own message
	wireExit              // the worker leaves after this task
	wireErr               // the task failed: an error follows
)

// taskMsg is a task sent to a worker. ID 0 is never used.
type taskMsg struct {
	ID     uint64
	Target string
	Chunk  bool
	Split  bool
	Arg    []byte // aliases the message it was parsed from
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
	b = append(b, flagIf(t.Chunk, wireChunk)|flagIf(t.Split, wireSplit))
	b = binary.AppendUvarint(b, uint64(len(t.Target)))
	b = append(b, t.Target...)
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
	*t = taskMsg{ID: id, Target: string(b[n : n+int(l)]), Chunk: flags&wireChunk != 0, Split: flags&wireSplit != 0}
	t.Arg = b[n+int(l):]
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
		e, err := encMode.Marshal(r.Err)
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
		if err := decMode.Unmarshal(b[n:n+int(l)], r.Err); err != nil {
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

package mp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// A pool worker is a child running poolWorker: it takes tasks from its Conn
// one at a time, runs the registered target each names, and sends back the
// result, until its Conn reaches EOF (the pool is done with it) or it has
// run its quota of tasks or outgrown its memory ceiling.

// taskMsg is a task sent to a worker. A small encoded argument travels in
// it; a large one (Split) follows as a bytes message of its own, so that
// neither side copies or checks it twice.
type taskMsg struct {
	_      struct{} `cbor:",toarray"`
	ID     uint64
	Target string
	Chunk  bool
	Arg    cbor.RawMessage
	Split  bool
}

// taskResult is a worker's answer to one task (ID 0: its hello, or its
// initializer's failure). A small encoded result travels in it; a large
// one (Split) follows as a bytes message.
type taskResult struct {
	_      struct{} `cbor:",toarray"`
	ID     uint64
	Result cbor.RawMessage
	Split  bool
	Err    *RemoteError
	Busy   int64 // nanoseconds spent on the task
	Exit   bool  // the worker leaves after this task
}

// splitAbove is the size from which a task's argument or result travels
// as a message of its own.
const splitAbove = 4 << 10

type workerArgs struct {
	Conn     *Conn
	Init     string // initializer target, "" for none
	InitArg  cbor.RawMessage
	MaxTasks int
	MaxRSS   uint64
}

var poolWorker = RegisterProc("mp.poolWorker", runPoolWorker)

// errInit marks an initializer's failure, which makes the pool unusable.
var errInit = errors.New("mp: pool initializer failed")

func runPoolWorker(a workerArgs) error {
	defer a.Conn.Close()
	if a.Init != "" {
		if err := runInitializer(a.Init, a.InitArg); err != nil {
			// Tell the pool, which stops starting workers that would fail too.
			a.Conn.Send(&taskResult{Err: err})
			return nil
		}
	}
	if err := a.Conn.Send(&taskResult{}); err != nil { // hello: ready for tasks
		return nil
	}
	var buf bytes.Buffer
	for done := 0; ; {
		var t taskMsg
		if err := a.Conn.Recv(&t); err != nil {
			return nil // the pool closed our connection
		}
		arg := []byte(t.Arg)
		if t.Split {
			var err error
			if arg, err = a.Conn.RecvBytes(0); err != nil {
				return nil
			}
		}
		start := time.Now()
		buf.Reset()
		res := taskResult{ID: t.ID}
		res.Err = runTask(t, arg, &buf)
		res.Busy = int64(time.Since(start))
		done++
		res.Exit = (a.MaxTasks > 0 && done >= a.MaxTasks) || (a.MaxRSS > 0 && rss() > a.MaxRSS)
		if res.Err == nil {
			if buf.Len() > splitAbove {
				res.Split = true
			} else {
				res.Result = buf.Bytes()
			}
		}
		if err := a.Conn.Send(&res); err != nil {
			return nil
		}
		if res.Split {
			if err := a.Conn.SendBytes(buf.Bytes()); err != nil {
				return nil
			}
		}
		if res.Exit {
			return nil
		}
		if buf.Cap() > 1<<20 {
			buf = bytes.Buffer{}
		}
	}
}

func runInitializer(name string, arg []byte) *RemoteError {
	e, ok := lookup(name)
	if !ok {
		return remoteErrHere(fmt.Errorf("%w %q in this binary", ErrUnknownTarget, name), "")
	}
	var buf bytes.Buffer
	_, rerr := call(func() (any, error) { return nil, e.task(arg, false, &buf) })
	if rerr != nil {
		rerr.Process, rerr.Pid = CurrentProcess().Name, os.Getpid()
		rerr.Message = errInit.Error() + ": " + rerr.Message
	}
	return rerr
}

func runTask(t taskMsg, arg []byte, buf *bytes.Buffer) *RemoteError {
	e, ok := lookup(t.Target)
	if !ok {
		return remoteErrHere(fmt.Errorf("%w %q in this binary", ErrUnknownTarget, t.Target), "")
	}
	_, rerr := call(func() (any, error) { return nil, e.task(arg, t.Chunk, buf) })
	if rerr != nil {
		me := CurrentProcess()
		rerr.Process, rerr.Pid = me.Name, me.Pid
	}
	return rerr
}

func remoteErrHere(err error, stack string) *RemoteError {
	me := CurrentProcess()
	return &RemoteError{Process: me.Name, Pid: me.Pid, Message: err.Error(), Stack: stack}
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

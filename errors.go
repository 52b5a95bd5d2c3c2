//go:build linux

package mp

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/go-mp/mp/internal/shm"
)

var (
	// ErrClosed is returned by operations on a closed Conn, Listener or
	// Process.
	ErrClosed = errors.New("mp: use of closed object")
	// ErrNotReadable is returned when receiving on the write-only end of a
	// one-way Pipe.
	ErrNotReadable = errors.New("mp: connection is write-only")
	// ErrNotWritable is returned when sending on the read-only end of a
	// one-way Pipe.
	ErrNotWritable = errors.New("mp: connection is read-only")
	// ErrBufferTooShort matches a *BufferTooShortError with errors.Is.
	ErrBufferTooShort = errors.New("mp: buffer too short for message")
	// ErrMessageTooLong is returned when a message exceeds the limit the
	// receiver set; the message is discarded and the Conn stays usable.
	ErrMessageTooLong = errors.New("mp: message longer than the limit")
	// ErrAuthentication is returned when the authkey handshake fails.
	ErrAuthentication = errors.New("mp: authentication failed")
	// ErrDaemonChildren is returned by Start in a daemon process: as in
	// Python, daemonic processes are not allowed to have children.
	ErrDaemonChildren = errors.New("mp: daemonic processes are not allowed to have children")
	// ErrNotStarted is returned by operations that need a started Process.
	ErrNotStarted = errors.New("mp: process not started")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("mp: process already started")
	// ErrStillRunning is returned by Close on a process that has not ended.
	ErrStillRunning = errors.New("mp: process still running")
	// ErrOwnerDied matches an *OwnerDiedError.
	ErrOwnerDied = errors.New("mp: previous owner died holding the lock")
	// ErrNotHeld is returned when releasing a lock that is not held (or,
	// for an RLock, not held by the caller).
	ErrNotHeld = errors.New("mp: release of a lock that is not held")
	// ErrUnknownTarget is reported when a child is asked to run a target
	// that is not registered in its binary.
	ErrUnknownTarget = errors.New("mp: unknown target")
)

// BufferTooShortError is returned by RecvBytesInto when the message does not
// fit in the buffer. It carries the whole message, as Python's
// BufferTooShort does.
type BufferTooShortError struct {
	Message []byte
}

// Error describes the failure.
func (e *BufferTooShortError) Error() string {
	return fmt.Sprintf("mp: buffer too short for a %d-byte message", len(e.Message))
}

// Is reports whether target is ErrBufferTooShort.
func (e *BufferTooShortError) Is(target error) bool { return target == ErrBufferTooShort }

// ExitError reports a child that ended with a non-zero exit code and did not
// report an error of its own (os.Exit(n), a crash, or a signal).
type ExitError struct {
	Name string // the process name
	Pid  int
	// Code is the exit code as Python reports it: n for exit(n), -N after
	// signal N.
	Code int
}

// Error describes the failure.
func (e *ExitError) Error() string {
	if e.Code < 0 {
		return fmt.Sprintf("mp: process %s (pid %d) killed by signal %v", e.Name, e.Pid, syscall.Signal(-e.Code))
	}
	return fmt.Sprintf("mp: process %s (pid %d) exited with code %d", e.Name, e.Pid, e.Code)
}

// Signal returns the signal that ended the process, or 0.
func (e *ExitError) Signal() syscall.Signal {
	if e.Code < 0 {
		return syscall.Signal(-e.Code)
	}
	return 0
}

// RemoteError is an error returned by, or a panic raised in, a target that
// ran in another process. It carries the remote message and stack, and the
// identity of the mp sentinel errors (ErrUnknownTarget, ErrEmpty, ...) the
// remote error matched: errors.Is(err, mp.ErrX) holds in the parent when it
// held in the child. Other errors arrive as text only.
type RemoteError struct {
	Process string // name of the process the target ran in
	Pid     int
	Message string // the error's text, or the panic value printed
	Panic   bool   // true when the target panicked
	Stack   string // the goroutine stack where the error was returned or the panic raised
	// Sentinels names the sentinel errors the remote error matched, in
	// the order of the table in errors.go; Unwrap returns them. A name
	// this binary does not know is ignored.
	Sentinels []string `cbor:",omitempty"`
}

// Error describes the failure.
func (e *RemoteError) Error() string {
	what := "error"
	if e.Panic {
		what = "panic"
	}
	return fmt.Sprintf("mp: %s in process %s (pid %d): %s", what, e.Process, e.Pid, e.Message)
}

// Unwrap returns the sentinel errors the remote error matched (see
// Sentinels), so that errors.Is sees through the process boundary.
func (e *RemoteError) Unwrap() []error { return sentinelsNamed(e.Sentinels) }

// A sentinel is an error whose identity crosses process boundaries: a
// child records the names of those its error matches, and the parent's
// *RemoteError unwraps to the same variables. Names only have to agree
// between a parent and its children, which run the same binary; they are
// spelled as in Go source so that they read well in a dump.
type sentinel struct {
	name string
	err  error
}

// sentinels is the table of errors whose identity a RemoteError carries:
// every exported sentinel of this package. It may grow at init time (a
// registration function for the user's own sentinels would add to it), so
// it is guarded; the order of list is the order Unwrap reports.
var sentinels = struct {
	sync.RWMutex
	list   []sentinel
	byName map[string]error
}{byName: map[string]error{}}

func init() {
	for _, s := range []sentinel{
		{"mp.ErrClosed", ErrClosed},
		{"mp.ErrNotReadable", ErrNotReadable},
		{"mp.ErrNotWritable", ErrNotWritable},
		{"mp.ErrBufferTooShort", ErrBufferTooShort},
		{"mp.ErrMessageTooLong", ErrMessageTooLong},
		{"mp.ErrAuthentication", ErrAuthentication},
		{"mp.ErrDaemonChildren", ErrDaemonChildren},
		{"mp.ErrNotStarted", ErrNotStarted},
		{"mp.ErrAlreadyStarted", ErrAlreadyStarted},
		{"mp.ErrStillRunning", ErrStillRunning},
		{"mp.ErrOwnerDied", ErrOwnerDied},
		{"mp.ErrNotHeld", ErrNotHeld},
		{"mp.ErrUnknownTarget", ErrUnknownTarget},
		{"mp.ErrBrokenBarrier", ErrBrokenBarrier},
		{"mp.ErrTooManyWaiters", ErrTooManyWaiters},
		{"mp.ErrCancelled", ErrCancelled},
		{"mp.ErrExecutorShutdown", ErrExecutorShutdown},
		{"mp.ErrInvalidChunksize", ErrInvalidChunksize},
		{"mp.ErrUnsupportedType", ErrUnsupportedType},
		{"mp.ErrPoolClosed", ErrPoolClosed},
		{"mp.ErrPoolTerminated", ErrPoolTerminated},
		{"mp.ErrWorkerLost", ErrWorkerLost},
		{"mp.ErrTaskTimeout", ErrTaskTimeout},
		{"mp.ErrEmpty", ErrEmpty},
		{"mp.ErrFull", ErrFull},
		{"mp.ErrQueueHandles", ErrQueueHandles},
		{"mp.ErrTaskDone", ErrTaskDone},
		{"mp.ErrItemTooLarge", ErrItemTooLarge},
		{"mp.ErrReleasedTooManyTimes", ErrReleasedTooManyTimes},
		{"mp.ErrTypeMismatch", ErrTypeMismatch},
		{"mp.ErrIndexOutOfRange", ErrIndexOutOfRange},
		{"mp.ErrInvalidSize", ErrInvalidSize},
	} {
		addSentinel(s.name, s.err)
	}
}

// addSentinel adds err to the table under name. A name or an error added
// twice is a programming error, and panics.
func addSentinel(name string, err error) {
	sentinels.Lock()
	defer sentinels.Unlock()
	if _, dup := sentinels.byName[name]; dup {
		panic("mp: sentinel error " + name + " added twice")
	}
	for _, s := range sentinels.list {
		if s.err == err {
			panic("mp: sentinel error " + name + " is already known as " + s.name)
		}
	}
	sentinels.list = append(sentinels.list, sentinel{name, err})
	sentinels.byName[name] = err
}

// sentinelNames returns the names of the sentinels err matches, or nil.
func sentinelNames(err error) []string {
	if err == nil {
		return nil
	}
	sentinels.RLock()
	defer sentinels.RUnlock()
	var names []string
	for _, s := range sentinels.list {
		if errors.Is(err, s.err) {
			names = append(names, s.name)
		}
	}
	return names
}

// sentinelsNamed returns the sentinels named by names, skipping unknown
// names (a peer's names are input).
func sentinelsNamed(names []string) []error {
	if len(names) == 0 {
		return nil
	}
	sentinels.RLock()
	defer sentinels.RUnlock()
	errs := make([]error, 0, len(names))
	for _, n := range names {
		if err, ok := sentinels.byName[n]; ok {
			errs = append(errs, err)
		}
	}
	return errs
}

// OwnerDiedError is returned by an acquire that took over a lock whose
// owner died holding it. The lock is held by the caller when this error is
// returned; the state the lock protects may be inconsistent.
type OwnerDiedError struct {
	Pid int // the dead owner
}

// Error describes the failure.
func (e *OwnerDiedError) Error() string {
	return fmt.Sprintf("mp: lock taken over from process %d, which died holding it", e.Pid)
}

// Is reports whether target is ErrOwnerDied.
func (e *OwnerDiedError) Is(target error) bool { return target == ErrOwnerDied }

func ownerDied(owner uint64) error { return &OwnerDiedError{Pid: int(owner & shm.PidMask)} }

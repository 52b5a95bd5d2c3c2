//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/go-mp/mp/internal/connerr"
	"github.com/go-mp/mp/internal/shm"
)

var (
	// ErrClosed is returned by operations on a closed Conn, Listener or
	// Process.
	ErrClosed = connerr.ErrClosed
	// ErrNotReadable is returned when receiving on the write-only end of a
	// one-way Pipe.
	ErrNotReadable = errors.New("mp: connection is write-only")
	// ErrNotWritable is returned when sending on the read-only end of a
	// one-way Pipe.
	ErrNotWritable = errors.New("mp: connection is read-only")
	// ErrBufferTooShort matches a *BufferTooShortError with errors.Is.
	ErrBufferTooShort = connerr.ErrBufferTooShort
	// ErrMessageTooLong is returned when a message exceeds the limit the
	// receiver set; the message is discarded and the Conn stays usable.
	ErrMessageTooLong = connerr.ErrMessageTooLong
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
// fit in the buffer. It carries the whole message (its field Message), as
// Python's BufferTooShort does, and matches ErrBufferTooShort. It is
// defined below the root package, so that the rings that carry messages
// between processes (internal/ringconn) return the same type.
type BufferTooShortError = connerr.BufferTooShortError

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
// ran in another process. It carries the remote message and stack, and
// what of the remote error crosses processes (see RegisterError and
// RegisterErrorType): the registered sentinels it matched and the
// registered typed errors it held, which Unwrap returns. So
// errors.Is(err, mp.ErrEmpty), errors.Is(err, io.EOF) or errors.As(err,
// &myErr) hold in the parent when they held in the child. Other errors
// arrive as their message and stack only.
type RemoteError struct {
	Process string // name of the process the target ran in
	Pid     int
	Message string // the error's text, or the panic value printed
	Panic   bool   // true when the target panicked
	Stack   string // the goroutine stack where the error was returned or the panic raised
	// Sentinels names the registered sentinel errors the remote error
	// matched, in the order they were registered.
	Sentinels []string `cbor:",omitempty"`
	// Values holds the registered typed errors the remote error held,
	// encoded, in the order their types were registered.
	Values []ErrorValue `cbor:",omitempty"`
}

// Error describes the failure.
func (e *RemoteError) Error() string {
	what := "error"
	if e.Panic {
		what = "panic"
	}
	return fmt.Sprintf("mp: %s in process %s (pid %d): %s", what, e.Process, e.Pid, e.Message)
}

// Unwrap returns the registered sentinels (see Sentinels) and rebuilt
// typed errors (see Values) of the remote error, so that errors.Is and
// errors.As see through the process boundary. A name this process has not
// registered, and a value that does not decode as its type, are left out.
// Each call rebuilds the typed errors afresh.
func (e *RemoteError) Unwrap() []error { return remoteUnwrap(e.Sentinels, e.Values) }

func init() {
	// The table of the sentinels registered by default: every exported
	// sentinel of this package, then the standard library's that targets
	// commonly return; then this package's typed errors that are small
	// (a BufferTooShortError holds a whole message).
	for _, s := range []struct {
		name string
		err  error
	}{
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

		{"context.Canceled", context.Canceled},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
		{"io.EOF", io.EOF},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF},
		{"fs.ErrInvalid", fs.ErrInvalid},
		{"fs.ErrPermission", fs.ErrPermission},
		{"fs.ErrExist", fs.ErrExist},
		{"fs.ErrNotExist", fs.ErrNotExist},
		{"fs.ErrClosed", fs.ErrClosed},
		{"os.ErrDeadlineExceeded", os.ErrDeadlineExceeded},
	} {
		RegisterError(s.name, s.err)
	}
	RegisterErrorType[*OwnerDiedError]()
	RegisterErrorType[*ExitError]()
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

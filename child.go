//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
)

// Main must be the first statement of main (and of TestMain). In a child
// started by mp it runs the requested target and exits (a spare, see
// [SetSpares], first waits there until a Start names its target); in any
// other process it returns at once. A child first closes every descriptor it
// inherited other than stdin, stdout and stderr (what its parent had open
// without close-on-exec is not the child's), as Python's spawn does;
// handles passed as arguments arrive after that.
func Main() {
	v, ok := os.LookupEnv(envChild)
	if !ok {
		if clusterhook.Main != nil {
			clusterhook.Main() // a cluster worker, if its environment says so
		}
		return
	}
	os.Unsetenv(envChild) // so that this child's own children start afresh
	os.Exit(runChild(v))
}

// Exit codes of a child that could not run its target.
const (
	exitOK       = 0
	exitFailed   = 1
	exitBootFail = 70
)

func runChild(fdText string) int {
	fdText, spare := strings.CutPrefix(fdText, spareMark)
	fd, err := strconv.Atoi(fdText)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mp: bad %s=%q\n", envChild, fdText)
		return exitBootFail
	}
	closeInherited(fd)
	unix.CloseOnExec(fd)
	ctrl, err := connFromFD(fd, flagReadable|flagWritable)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mp: child:", err)
		return exitBootFail
	}
	if spare {
		// Dropped before warmUp, which maps again the pages that the
		// messages of a start touch.
		dropFilePages()
		warmUp()
		// Ready: the parent may now count on this child to start at once.
		if err := ctrl.SendBytes(nil); err != nil {
			return exitBootFail // the parent is gone
		}
	}
	var boot bootMsg
	if err := ctrl.Recv(&boot); err != nil {
		if spare && errors.Is(err, io.EOF) {
			// The parent ended, or ended this spare without using it:
			// there is nothing to say, and nobody to say it to.
			return exitBootFail
		}
		fmt.Fprintln(os.Stderr, "mp: child: receive start message:", err)
		return exitBootFail
	}
	alive := new(atomic.Bool)
	alive.Store(true)
	self.Lock()
	self.identity = boot.Identity
	self.info = ProcessInfo{Name: boot.Name, Pid: os.Getpid(), Daemon: boot.Daemon, Authkey: boot.Authkey}
	self.parent = &ParentInfo{Name: boot.ParentName, Pid: boot.ParentPid, alive: alive}
	self.Unlock()

	e, ok := lookup(boot.Target)
	if !ok {
		return report(ctrl, remoteErr(fmt.Errorf("%w %q in this binary", ErrUnknownTarget, boot.Target), false))
	}
	run, err := e.start(ctrl)
	if err != nil {
		return report(ctrl, remoteErr(err, false))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := &targetStop{cancel: cancel, grace: graceOr(boot.Grace)}
	if e.seesCtx {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		go func() {
			<-sigs
			stop.after(func() {
				// The end Terminate asked for: as if no handler had been set.
				signal.Reset(syscall.SIGTERM)
				unix.Kill(os.Getpid(), syscall.SIGTERM)
			})
		}()
	}
	go lifeline(ctrl, alive, boot.Daemon, e.seesCtx, stop)
	_, rerr := call(func() (any, error) { return run(ctx) })
	stop.returned()
	return report(ctrl, rerr)
}

// warmUp does, while a spare waits, the first-time work of the messages a
// child exchanges with its parent (the codec builds its tables for a type
// when it first meets it), so that a target started in a spare does not.
func warmUp() {
	a, b, err := Pipe(true)
	if err != nil {
		return
	}
	defer a.Close()
	defer b.Close()
	var boot bootMsg
	var res resultMsg
	if a.Send(&bootMsg{Identity: []int{1}}) == nil && b.Recv(&boot) == nil && b.Send(&resultMsg{Err: &RemoteError{}}) == nil {
		a.Recv(&res)
	}
}

// DefaultCancelGrace is how long a target that sees cancellation (see
// [RegisterCtx]) has, once its ctx is cancelled, to return before its
// process is ended, unless the caller sets another grace.
const DefaultCancelGrace = 5 * time.Second

// graceOr returns the grace d stands for: 0 means DefaultCancelGrace and a
// negative one none.
func graceOr(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultCancelGrace
	case d < 0:
		return 0
	}
	return d
}

// targetStop cancels a child's target and ends the child if it has not
// exited within the grace.
type targetStop struct {
	cancel context.CancelFunc
	grace  time.Duration
	mu     sync.Mutex
	done   bool // the target returned
}

// after cancels the target's ctx and calls end once the grace has passed,
// if the process is still there: a target that returns in time lets the
// child report and exit as usual, unless the child then outstays the grace
// (waiting for children of its own, say). After the target has returned,
// end is called at once: there is nothing left to cancel.
func (s *targetStop) after(end func()) {
	s.mu.Lock()
	if s.done {
		end()
	}
	s.mu.Unlock()
	s.cancel()
	time.AfterFunc(s.grace, end)
}

// returned records that the target returned.
func (s *targetStop) returned() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

// closeInherited closes every descriptor above 2 but keep that this
// process inherited through exec. Those are exactly the ones without
// FD_CLOEXEC: exec closed the others, and everything opened since (by the
// runtime, like the netpoller's epoll and pipe, or by mp) has the flag,
// so it is left alone. The parent cannot do this itself: Go's exec passes
// every descriptor of the parent that lacks the flag.
func closeInherited(keep int) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return // no /proc: the child could not have been started from /proc/self/exe either
	}
	names, _ := d.Readdirnames(-1)
	d.Close() // (its descriptor, listed too, is close-on-exec)
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd <= 2 || fd == keep {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

// lifeline watches the control connection: it reaches EOF when the parent
// ends, however it ends. A daemon child then exits: at once, or, if its
// target sees its ctx, once the grace has passed after cancelling it.
func lifeline(ctrl *Conn, alive *atomic.Bool, daemon, seesCtx bool, stop *targetStop) {
	for {
		if _, err := ctrl.RecvBytes(0); err != nil {
			break
		}
	}
	alive.Store(false)
	switch {
	case daemon && seesCtx:
		stop.after(func() { os.Exit(exitFailed) })
	case daemon:
		os.Exit(exitFailed)
	}
}

func call(run func() (any, error)) (res any, rerr *RemoteError) {
	defer func() {
		if r := recover(); r != nil {
			err, _ := r.(error)
			rerr = newRemoteError(err, fmt.Sprint(r), string(debug.Stack()), true)
		}
	}()
	res, err := run()
	if err != nil {
		return nil, remoteErr(err, true)
	}
	return res, nil
}

func remoteErr(err error, stack bool) *RemoteError {
	var st string
	if stack {
		st = string(debug.Stack())
	}
	return newRemoteError(err, err.Error(), st, false)
}

// report sends the target's failure, if it failed, to the parent (see
// resultMsg), joins this process's non-daemon children as Python does at
// exit, and returns the exit code.
func report(ctrl *Conn, rerr *RemoteError) int {
	if rerr != nil {
		me := CurrentProcess()
		rerr.Process, rerr.Pid = me.Name, me.Pid
		err := ctrl.Send(&resultMsg{Err: rerr})
		var encErr *codec.EncodeError
		if errors.As(err, &encErr) {
			rerr = &RemoteError{Process: me.Name, Pid: me.Pid, Message: "cannot encode the error: " + err.Error()}
			err = ctrl.Send(&resultMsg{Err: rerr})
		}
		_ = err // the parent is gone: nobody is left to tell
	}
	for _, c := range ActiveChildren() {
		if !c.Daemon {
			c.Join(context.Background())
		}
	}
	if rerr != nil {
		return exitFailed
	}
	return exitOK
}

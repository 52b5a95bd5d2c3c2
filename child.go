package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Main must be the first statement of main (and of TestMain). In a child
// started by mp it runs the requested target and exits; in any other
// process it returns at once.
func Main() {
	v, ok := os.LookupEnv(envChild)
	if !ok {
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
	fd, err := strconv.Atoi(fdText)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mp: bad %s=%q\n", envChild, fdText)
		return exitBootFail
	}
	unix.CloseOnExec(fd)
	ctrl, err := connFromFD(fd, flagReadable|flagWritable)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mp: child:", err)
		return exitBootFail
	}
	var boot bootMsg
	if err := ctrl.Recv(&boot); err != nil {
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
		return report(ctrl, nil, remoteErr(fmt.Errorf("%w %q in this binary", ErrUnknownTarget, boot.Target), false))
	}
	run, err := e.start(ctrl)
	if err != nil {
		return report(ctrl, nil, remoteErr(err, false))
	}
	go lifeline(ctrl, alive, boot.Daemon)
	res, rerr := call(run)
	return report(ctrl, res, rerr)
}

// lifeline watches the control connection: it reaches EOF when the parent
// ends, however it ends. A daemon child then exits at once.
func lifeline(ctrl *Conn, alive *atomic.Bool, daemon bool) {
	for {
		if _, err := ctrl.RecvBytes(0); err != nil {
			break
		}
	}
	alive.Store(false)
	if daemon {
		os.Exit(exitFailed)
	}
}

func call(run func() (any, error)) (res any, rerr *RemoteError) {
	defer func() {
		if r := recover(); r != nil {
			rerr = &RemoteError{Message: fmt.Sprint(r), Panic: true, Stack: string(debug.Stack())}
			if err, ok := r.(error); ok {
				rerr.Sentinels = sentinelNames(err)
			}
		}
	}()
	res, err := run()
	if err != nil {
		return nil, remoteErr(err, true)
	}
	return res, nil
}

func remoteErr(err error, stack bool) *RemoteError {
	e := &RemoteError{Message: err.Error(), Sentinels: sentinelNames(err)}
	if stack {
		e.Stack = string(debug.Stack())
	}
	return e
}

// report sends the outcome to the parent, joins this process's non-daemon
// children as Python does at exit, and returns the exit code.
func report(ctrl *Conn, res any, rerr *RemoteError) int {
	me := CurrentProcess()
	if rerr != nil {
		rerr.Process, rerr.Pid = me.Name, me.Pid
	}
	err := ctrl.Send(&resultMsg{Result: res, Err: rerr})
	var encErr *encodeError
	if errors.As(err, &encErr) {
		rerr = &RemoteError{Process: me.Name, Pid: me.Pid, Message: "cannot encode the result: " + err.Error()}
		err = ctrl.Send(&resultMsg{Err: rerr})
	}
	_ = err // the parent is gone: nobody is left to tell
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

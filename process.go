//go:build linux

package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a child process that runs a registered target, like Python's
// multiprocessing.Process. Set its exported fields before Start, as with
// exec.Cmd.
type Process struct {
	// Name defaults to Process-N (Process-N:M in a child of Process-N).
	Name string
	// Daemon children exit as soon as their parent ends, however it ends,
	// and may not start children of their own.
	Daemon bool
	// Authkey defaults to the current process's authkey.
	Authkey []byte
	// CancelGrace is how long a target registered with RegisterCtx has to
	// return once its ctx is cancelled by Terminate or, for a daemon, by
	// the end of this process, before the child is ended. 0 means
	// DefaultCancelGrace (5 s), a negative grace none. Other targets are
	// ended at once.
	CancelGrace time.Duration

	target   string
	arg      any
	identity []int
	initErr  error

	mu       sync.Mutex
	started  bool
	closed   bool
	pid      int
	osp      *os.Process
	done     chan struct{}
	code     int
	remote   *RemoteError
	sentinel *os.File // read end, lazily made; EOF once the child is reaped
	sentW    *os.File
	// reaped is set, under mu, with the exit code and when the reaper
	// closes sentW. Sentinel and IsAlive check it rather than done, which
	// closes only after mu is released: a write end made in between would
	// be left open (leaking it, the sentinel never readable), and a
	// Process that Wait reported ended would refuse Close with
	// ErrStillRunning, leaving its sentinel open.
	reaped bool
}

// testHookReaped, set only by tests, runs in the reaper between the
// release of a reaped Process's lock and the closing of its done channel.
var testHookReaped atomic.Pointer[func(*Process)]

// NewProcess returns a Process that will run f(arg) in a child.
func NewProcess[A, R any](f *Func[A, R], arg A) *Process {
	return newProcess(f.name, arg)
}

// NewRunnerProcess returns a Process that will call r.Run in a child. The
// type of r must have been registered with [RegisterRunner]; its exported
// fields are copied to the child.
func NewRunnerProcess(r Runner) *Process {
	regMu.RLock()
	name, ok := runners[reflect.TypeOf(r)]
	regMu.RUnlock()
	p := newProcess(name, r)
	if !ok {
		p.initErr = fmt.Errorf("%w: runner type %T is not registered (see RegisterRunner)", ErrUnknownTarget, r)
	}
	return p
}

func newProcess(target string, arg any) *Process {
	id, name := nextIdentity()
	return &Process{Name: name, target: target, arg: arg, identity: id, done: make(chan struct{})}
}

// bootMsg is the first message a child receives; its target's argument
// follows as a message of its own, with its handles.
type bootMsg struct {
	Target     string
	Name       string
	Identity   []int
	Daemon     bool
	Authkey    []byte
	Grace      time.Duration // see Process.CancelGrace
	ParentPid  int
	ParentName string
}

// resultMsg is what a child whose target failed reports before it exits.
// A child whose target succeeded sends nothing: a Process has no use for
// the target's result, and the message, its encoding and the parent's
// wake-up to read it cost a warm Start and Join about a tenth of its time.
type resultMsg struct {
	Err *RemoteError
}

// envChild tells a child the descriptor of its control connection, after
// spareMark for a spare.
const (
	envChild  = "MP_CHILD_FD"
	spareMark = "spare:"
)

var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// Start starts the child. Arguments are sent before Start returns, so
// handles passed as arguments (a Conn, say) may be closed in the parent
// right after.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrClosed
	case p.started:
		return ErrAlreadyStarted
	case p.initErr != nil:
		return p.initErr
	}
	if _, ok := lookup(p.target); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTarget, p.target)
	}
	me := CurrentProcess()
	if me.Daemon {
		return ErrDaemonChildren
	}
	if p.Authkey == nil {
		p.Authkey = me.Authkey
	}
	boot := bootMsg{
		Target: p.target, Name: p.Name, Identity: p.identity, Daemon: p.Daemon,
		Authkey: p.Authkey, Grace: p.CancelGrace, ParentPid: me.Pid, ParentName: me.Name,
	}
	s := bootSpare(&boot)
	var osp *os.Process
	var ctrl *Conn
	var err error
	if s != nil {
		osp, ctrl = s.osp, s.ctrl
	} else {
		if osp, ctrl, err = startChild(os.Environ(), false); err != nil {
			return fmt.Errorf("mp: start %s: %w", p.Name, err)
		}
		err = ctrl.Send(&boot)
	}
	if err == nil {
		err = ctrl.Send(p.arg)
	}
	if err != nil {
		if s != nil {
			s.discard()
		} else {
			osp.Kill()
			osp.Wait()
			ctrl.Close()
		}
		return fmt.Errorf("mp: send arguments to %s: %w", p.Name, err)
	}
	p.started = true
	p.pid = osp.Pid
	p.osp = osp
	p.arg = nil
	addChild(p)
	if s != nil {
		s.owner <- p // its watcher reaps it
	} else {
		go p.reap(ctrl)
	}
	return nil
}

// startChild re-executes this binary with the environment env as a child
// that waits for its boot message on the returned control connection. A
// spare says first that it waits.
func startChild(env []string, spare bool) (*os.Process, *Conn, error) {
	null, err := devNull()
	if err != nil {
		return nil, nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	childEnd := os.NewFile(uintptr(fds[1]), "mp-child")
	ctrl, err := connFromFD(fds[0], flagReadable|flagWritable)
	if err != nil {
		childEnd.Close()
		return nil, nil, err
	}
	fd := "3"
	if spare {
		fd = spareMark + fd
	}
	osp, err := os.StartProcess("/proc/self/exe", []string{os.Args[0]}, &os.ProcAttr{
		Env:   append(env[:len(env):len(env)], envChild+"="+fd),
		Files: []*os.File{null, os.Stdout, os.Stderr, childEnd},
	})
	childEnd.Close()
	if err != nil {
		ctrl.Close()
		return nil, nil, err
	}
	return osp, ctrl, nil
}

// reap collects the child's report and exit status. Every child started
// cold is reaped here, joined or not (one started from a spare, by the
// spare's watcher).
func (p *Process) reap(ctrl *Conn) {
	var res resultMsg
	gotResult := ctrl.Recv(&res) == nil
	p.finish(ctrl, gotResult, res.Err, waitExit(p.osp))
}

// waitExit waits for osp to end and returns its exit code.
func waitExit(osp *os.Process) int {
	st, err := osp.Wait()
	if err != nil {
		return 1
	}
	return exitCode(st)
}

// finish records how the child ended, given the report read from ctrl
// (if gotResult) and its exit code, and closes ctrl.
func (p *Process) finish(ctrl *Conn, gotResult bool, remote *RemoteError, code int) {
	ctrl.Close()
	p.mu.Lock()
	p.code = code
	if gotResult {
		p.remote = remote
	}
	if p.sentW != nil {
		p.sentW.Close()
		p.sentW = nil
	}
	p.reaped = true
	p.mu.Unlock()
	removeChild(p) // before done: a joined child is never listed as active
	if h := testHookReaped.Load(); h != nil {
		(*h)(p)
	}
	close(p.done)
}

func exitCode(st *os.ProcessState) int {
	ws, ok := st.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return st.ExitCode()
}

// Join waits for the child to end or ctx to be done. It returns nil when the
// child's target returned nil; the target's error or panic as a
// *RemoteError; a *ExitError when the child exited non-zero otherwise
// (os.Exit, a signal); or ctx.Err() when ctx ended first. A child that
// has ended when Join is called is reported even if ctx is already done:
// Join with a done ctx looks without waiting, as Python's join(0) does.
func (p *Process) Join(ctx context.Context) error {
	p.mu.Lock()
	err := p.usable()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.err()
	default:
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.err()
}

// usable returns ErrClosed or ErrNotStarted when the Process cannot be
// joined, signalled or waited on. p.mu is held.
func (p *Process) usable() error {
	switch {
	case p.closed:
		return ErrClosed
	case !p.started:
		return ErrNotStarted
	}
	return nil
}

func (p *Process) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.remote != nil:
		return p.remote
	case p.code != 0:
		return &ExitError{Name: p.Name, Pid: p.pid, Code: p.code}
	}
	return nil
}

// Done returns a channel closed once the child has ended and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// IsAlive reports whether the child has started and not yet ended.
func (p *Process) IsAlive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	// reaped, not done: it is set with the exit code and the sentinel's
	// end, so that a Process that Wait reported ended can be closed at
	// once (done closes a moment later).
	return p.started && !p.reaped
}

// Pid returns the child's process id, or 0 before Start.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// ExitCode returns the exit code as Python reports it (0; 1 after a
// returned error or a panic; n after os.Exit(n); -N after signal N) and
// true, or false while the child has not ended.
func (p *Process) ExitCode() (int, bool) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.code, true
	default:
		return 0, false
	}
}

// Terminate sends SIGTERM to the child, which ends it at once (exit code
// -15) unless its target was registered with [RegisterCtx]: that target's
// ctx is then cancelled, and the child ends as usual if it exits within
// CancelGrace, or with -15 once the grace has passed. Terminate
// does not wait: Join does. It does nothing if the child has already
// ended, and returns ErrNotStarted before Start and ErrClosed after Close.
func (p *Process) Terminate() error { return p.signal(syscall.SIGTERM) }

// Kill sends SIGKILL to the child. It does nothing if the child has
// already ended, and returns ErrNotStarted before Start and ErrClosed after
// Close.
func (p *Process) Kill() error { return p.signal(syscall.SIGKILL) }

func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.osp.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Sentinel returns a descriptor that becomes readable (at EOF) once the
// child has ended, for use with poll or select. It stays owned by the
// Process and is closed by Close. [Wait] accepts the Process itself.
func (p *Process) Sentinel() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return -1, err
	}
	if p.sentinel == nil {
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		p.sentinel = r
		if p.reaped {
			w.Close()
		} else {
			p.sentW = w
		}
	}
	return int(p.sentinel.Fd()), nil
}

// Close releases the Process's resources. It fails with ErrStillRunning if
// the child is still running; Close is idempotent. After Close, Start,
// Join, Terminate, Kill, Sentinel and Wait return ErrClosed, as Python
// raises ValueError. Python raises for is_alive, pid and exitcode too;
// here IsAlive reports false, and Pid, ExitCode and Done go on reporting
// what they knew, since they cannot fail.
func (p *Process) Close() error {
	if p.IsAlive() {
		return ErrStillRunning
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.sentinel != nil {
		p.sentinel.Close()
		p.sentinel = nil
	}
	return nil
}

// String returns a description like Python's repr of a Process.
func (p *Process) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	state := "initial"
	switch {
	case p.closed:
		state = "closed"
	case p.started:
		state = "started"
		select {
		case <-p.done:
			state = fmt.Sprintf("stopped exitcode=%d", p.code)
		default:
		}
	}
	if p.Daemon {
		state += " daemon"
	}
	return fmt.Sprintf("<Process name=%q pid=%d %s>", p.Name, p.pid, state)
}

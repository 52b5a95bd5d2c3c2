//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// info is what a child reports about itself.
type info struct {
	Name       string
	Pid        int
	Daemon     bool
	Authkey    []byte
	ParentName string
	ParentPid  int
	Err        string
}

func describe() info {
	me := mp.CurrentProcess()
	i := info{Name: me.Name, Pid: me.Pid, Daemon: me.Daemon, Authkey: me.Authkey}
	if p := mp.ParentProcess(); p != nil {
		i.ParentName, i.ParentPid = p.Name, p.Pid
	}
	return i
}

type reportArgs struct {
	Out *mp.Conn
	// Nested starts a child of the child that reports too.
	Nested bool
}

var report = mp.RegisterProc("test.report", func(a reportArgs) error {
	defer a.Out.Close()
	if err := a.Out.Send(describe()); err != nil {
		return err
	}
	if a.Nested {
		p := mp.NewProcess(reportChild, reportArgs{Out: a.Out})
		if err := p.Start(); err != nil {
			return a.Out.Send(info{Err: err.Error()})
		}
		return p.Join(context.Background())
	}
	return nil
})

// reportChild is report under another name so that a target can start it.
var reportChild = mp.RegisterProc("test.reportChild", func(a reportArgs) error {
	defer a.Out.Close()
	return a.Out.Send(describe())
})

var fail = mp.RegisterProc("test.fail", func(how string) error {
	switch how {
	case "error":
		return errors.New("boom from child")
	case "panic":
		panicHere()
	case "exit3":
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Minute)
	case "huge":
		return errors.New(strings.Repeat("x", hugeError))
	}
	return nil
})

// hugeError is the length of the error of fail("huge"): more than a
// socket's buffer takes without a reader.
const hugeError = 4 << 20

func panicHere() { panic("kaboom") }

func pipe(t *testing.T, duplex bool) (*mp.Conn, *mp.Conn) {
	t.Helper()
	a, b, err := mp.Pipe(duplex)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func start(t *testing.T, p *mp.Process) *mp.Process {
	t.Helper()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		p.Join(context.Background())
		p.Close()
	})
	return p
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestProcessReportsIdentity(t *testing.T) {
	r, w := pipe(t, false)
	p := mp.NewProcess(report, reportArgs{Out: w, Nested: true})
	if !strings.HasPrefix(p.Name, "Process-") {
		t.Fatalf("default name %q", p.Name)
	}
	start(t, p)
	w.Close() // the child holds its own copy
	var child, grandchild info
	if err := r.Recv(&child); err != nil {
		t.Fatal(err)
	}
	if err := r.Recv(&grandchild); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	me := mp.CurrentProcess()
	if child.Name != p.Name || child.Pid != p.Pid() || child.ParentPid != os.Getpid() || child.ParentName != "MainProcess" {
		t.Errorf("child reported %+v; process %v", child, p)
	}
	if !bytes.Equal(child.Authkey, me.Authkey) || len(me.Authkey) != 32 {
		t.Errorf("authkey not inherited: %x vs %x", child.Authkey, me.Authkey)
	}
	if grandchild.Name != p.Name+":1" || grandchild.ParentPid != p.Pid() || grandchild.ParentName != p.Name {
		t.Errorf("grandchild reported %+v, want name %s:1", grandchild, p.Name)
	}
	if !bytes.Equal(grandchild.Authkey, me.Authkey) {
		t.Errorf("grandchild authkey differs")
	}
	// Both copies of the write end are gone with the processes: EOF.
	var extra info
	if err := r.Recv(&extra); err == nil || !errors.Is(err, io.EOF) {
		t.Errorf("Recv after all writers exited = %v, want EOF", err)
	}
	if code, ok := p.ExitCode(); !ok || code != 0 {
		t.Errorf("ExitCode = %d, %v", code, ok)
	}
	if p.IsAlive() {
		t.Error("IsAlive after Join")
	}
}

func TestDaemonCannotHaveChildren(t *testing.T) {
	r, w := pipe(t, false)
	p := mp.NewProcess(report, reportArgs{Out: w, Nested: true})
	p.Daemon = true
	start(t, p)
	w.Close()
	var child, second info
	if err := r.Recv(&child); err != nil {
		t.Fatal(err)
	}
	if err := r.Recv(&second); err != nil {
		t.Fatal(err)
	}
	if !child.Daemon {
		t.Error("child does not know it is a daemon")
	}
	if second.Err != mp.ErrDaemonChildren.Error() {
		t.Errorf("daemon starting a child: %q, want %q", second.Err, mp.ErrDaemonChildren)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestChildError(t *testing.T) {
	p := start(t, mp.NewProcess(fail, "error"))
	err := p.Join(ctxTimeout(t, 10*time.Second))
	var re *mp.RemoteError
	if !errors.As(err, &re) || re.Panic || re.Message != "boom from child" || re.Pid != p.Pid() || re.Process != p.Name {
		t.Fatalf("Join = %#v", err)
	}
	if re.Stack == "" {
		t.Error("no stack")
	}
	if code, _ := p.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}

func TestChildPanic(t *testing.T) {
	p := start(t, mp.NewProcess(fail, "panic"))
	err := p.Join(ctxTimeout(t, 10*time.Second))
	var re *mp.RemoteError
	if !errors.As(err, &re) || !re.Panic || re.Message != "kaboom" {
		t.Fatalf("Join = %v", err)
	}
	if !strings.Contains(re.Stack, "panicHere") {
		t.Errorf("stack does not show where the panic was raised:\n%s", re.Stack)
	}
	if code, _ := p.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}

// TestChildHugeError has a child, started cold and in a spare, report an
// error larger than its socket's buffer: the report arrives whole, as
// the parent reads it while the child writes it. (A parent that waited
// for the child's end before reading would never see it.)
func TestChildHugeError(t *testing.T) {
	for _, spares := range []int{0, 1} {
		if spares > 0 {
			withSpares(t, spares)
		}
		p := start(t, mp.NewProcess(fail, "huge"))
		err := p.Join(ctxTimeout(t, 20*time.Second))
		var re *mp.RemoteError
		if !errors.As(err, &re) || len(re.Message) != hugeError {
			t.Fatalf("spares %d: Join = %.200v", spares, err)
		}
	}
}

// unencodable returns a result that the codec cannot encode.
var unencodable = mp.Register("test.unencodable", func(struct{}) (chan int, error) { return make(chan int), nil })

// TestChildResultDropped runs a target whose result cannot be encoded in
// a child: a Process drops its target's result without encoding it, so
// the child succeeds. (It used to encode the result, for nothing, and
// failed with "cannot encode the result".)
func TestChildResultDropped(t *testing.T) {
	p := start(t, mp.NewProcess(unencodable, struct{}{}))
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if code, _ := p.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestChildExitCode(t *testing.T) {
	p := start(t, mp.NewProcess(fail, "exit3"))
	err := p.Join(ctxTimeout(t, 10*time.Second))
	var ee *mp.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Signal() != 0 {
		t.Fatalf("Join = %v", err)
	}
}

func TestTerminateKillAndJoinTimeout(t *testing.T) {
	for _, tc := range []struct {
		stop func(*mp.Process) error
		sig  syscall.Signal
	}{{(*mp.Process).Terminate, syscall.SIGTERM}, {(*mp.Process).Kill, syscall.SIGKILL}} {
		p := start(t, mp.NewProcess(fail, "sleep"))
		if code, ok := p.ExitCode(); ok {
			t.Fatalf("ExitCode while running = %d", code)
		}
		if err := p.Join(ctxTimeout(t, 50*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Join of a sleeping child = %v", err)
		}
		if !p.IsAlive() {
			t.Fatal("not alive")
		}
		if err := p.Close(); !errors.Is(err, mp.ErrStillRunning) {
			t.Errorf("Close while running = %v", err)
		}
		if err := tc.stop(p); err != nil {
			t.Fatal(err)
		}
		err := p.Join(ctxTimeout(t, 10*time.Second))
		var ee *mp.ExitError
		if !errors.As(err, &ee) || ee.Code != -int(tc.sig) || ee.Signal() != tc.sig {
			t.Fatalf("Join after %v = %v", tc.sig, err)
		}
		if code, _ := p.ExitCode(); code != -int(tc.sig) {
			t.Errorf("exit code %d", code)
		}
		if err := tc.stop(p); err != nil {
			t.Errorf("signalling an ended process: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestProcessMisuse(t *testing.T) {
	p := mp.NewProcess(fail, "")
	if err := p.Join(context.Background()); !errors.Is(err, mp.ErrNotStarted) {
		t.Errorf("Join before Start = %v", err)
	}
	if err := p.Terminate(); !errors.Is(err, mp.ErrNotStarted) {
		t.Errorf("Terminate before Start = %v", err)
	}
	start(t, p)
	if err := p.Start(); !errors.Is(err, mp.ErrAlreadyStarted) {
		t.Errorf("second Start = %v", err)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	type unregistered struct{ runner }
	if err := mp.NewRunnerProcess(&unregistered{}).Start(); !errors.Is(err, mp.ErrUnknownTarget) {
		t.Errorf("unregistered runner: %v", err)
	}
}

// runner is the "subclass" style.
type runner struct {
	Greeting string
	Out      *mp.Conn
	hidden   string
}

func (r *runner) Run() error {
	defer r.Out.Close()
	return r.Out.Send(r.Greeting + "|" + r.hidden + "|" + mp.CurrentProcess().Name)
}

var _ = mp.RegisterRunner[runner]("test.runner")

func TestRunnerStyle(t *testing.T) {
	r, w := pipe(t, false)
	p := start(t, mp.NewRunnerProcess(&runner{Greeting: "hi", Out: w, hidden: "not sent"}))
	w.Close()
	var got string
	if err := r.Recv(&got); err != nil {
		t.Fatal(err)
	}
	if want := "hi||" + p.Name; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestActiveChildren(t *testing.T) {
	p := start(t, mp.NewProcess(fail, "sleep"))
	found := false
	for _, c := range mp.ActiveChildren() {
		found = found || c == p
	}
	if !found {
		t.Fatal("running child not in ActiveChildren")
	}
	p.Kill()
	p.Join(context.Background())
	for _, c := range mp.ActiveChildren() {
		if c == p {
			t.Fatal("ended child still in ActiveChildren")
		}
	}
	if mp.CPUCount() < 1 {
		t.Error("CPUCount < 1")
	}
}

// TestClosedProcess closes a Process (after its child ended, and one never
// started): every operation that can fail reports ErrClosed, as Python
// raises ValueError; the others report what they knew.
func TestClosedProcess(t *testing.T) {
	p := start(t, mp.NewProcess(fail, "exit3"))
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err == nil {
		t.Fatal("Join = nil, want exit code 3")
	}
	pid := p.Pid()
	fresh := mp.NewProcess(fail, "")
	for _, q := range []*mp.Process{p, fresh} {
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		for name, op := range map[string]func() error{
			"Start":     q.Start,
			"Join":      func() error { return q.Join(context.Background()) },
			"Terminate": q.Terminate,
			"Kill":      q.Kill,
			"Sentinel":  func() error { _, err := q.Sentinel(); return err },
			"Wait":      func() error { _, err := mp.Wait(context.Background(), q); return err },
		} {
			if err := op(); !errors.Is(err, mp.ErrClosed) {
				t.Errorf("%s on %v = %v, want ErrClosed", name, q, err)
			}
		}
		if q.IsAlive() {
			t.Errorf("IsAlive on %v", q)
		}
		if !strings.Contains(q.String(), "closed") {
			t.Errorf("String = %s", q)
		}
	}
	if code, ok := p.ExitCode(); !ok || code != 3 || p.Pid() != pid {
		t.Errorf("after Close: ExitCode = %d, %v; Pid = %d, want %d", code, ok, p.Pid(), pid)
	}
}

//go:build linux

package mp_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

type ctxArgs struct {
	Out    *mp.Conn
	Ignore bool // go on after ctx is cancelled, as a target that does not look at it
	Code   int  // exit with this code on ctx.Done (0: return nil)
}

// ctxWatcher reports its pid, waits for its ctx, reports that it saw the
// cancellation, then returns (or, with Ignore, sleeps on).
var ctxWatcher = mp.RegisterProcCtx("test.ctxWatcher", func(ctx context.Context, a ctxArgs) error {
	defer a.Out.Close()
	if err := a.Out.Send(os.Getpid()); err != nil {
		return err
	}
	<-ctx.Done()
	if err := a.Out.Send("cancelled"); err != nil {
		return err
	}
	if a.Ignore {
		time.Sleep(time.Minute)
	}
	if a.Code != 0 {
		os.Exit(a.Code)
	}
	return nil
})

// recvPid and recvCancelled read what ctxWatcher reports.
func recvPid(t *testing.T, r *mp.Conn) int {
	t.Helper()
	var pid int
	if err := r.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func recvCancelled(t *testing.T, r *mp.Conn) {
	t.Helper()
	var s string
	if err := r.Recv(&s); err != nil || s != "cancelled" {
		t.Fatalf("the target did not see its ctx cancelled: %q, %v", s, err)
	}
}

func TestTerminateCancelsCtxTarget(t *testing.T) {
	for _, code := range []int{0, 3} {
		r, w := pipe(t, false)
		p := mp.NewProcess(ctxWatcher, ctxArgs{Out: w, Code: code})
		p.CancelGrace = time.Minute // it returns long before
		start(t, p)
		w.Close()
		recvPid(t, r)
		if err := p.Terminate(); err != nil {
			t.Fatal(err)
		}
		recvCancelled(t, r)
		err := p.Join(ctxTimeout(t, 10*time.Second))
		got, _ := p.ExitCode()
		if got != code || (code == 0) != (err == nil) {
			t.Fatalf("exit code %d (%v), want %d: the child's own end", got, err, code)
		}
	}
}

func TestTerminateEndsCtxTargetAfterGrace(t *testing.T) {
	r, w := pipe(t, false)
	p := mp.NewProcess(ctxWatcher, ctxArgs{Out: w, Ignore: true})
	p.CancelGrace = 100 * time.Millisecond
	start(t, p)
	w.Close()
	recvPid(t, r)
	p.Terminate()
	recvCancelled(t, r)
	err := p.Join(ctxTimeout(t, 10*time.Second))
	if code, _ := p.ExitCode(); code != -15 {
		t.Fatalf("exit code %d (%v), want -15 once the grace is over", code, err)
	}
}

type daemonCtxArgs struct{ Out *mp.Conn }

// daemonCtxParent starts a daemon ctxWatcher that reports on a.Out, then
// waits to be killed.
var daemonCtxParent = mp.RegisterProc("test.daemonCtxParent", func(a daemonCtxArgs) error {
	p := mp.NewProcess(ctxWatcher, ctxArgs{Out: a.Out})
	p.Daemon = true
	p.CancelGrace = time.Minute
	if err := p.Start(); err != nil {
		return err
	}
	a.Out.Close()
	time.Sleep(time.Minute)
	return nil
})

func TestParentDeathCancelsDaemonCtx(t *testing.T) {
	adoptOrphans(t)
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(daemonCtxParent, daemonCtxArgs{Out: w}))
	w.Close()
	pid := recvPid(t, r)
	t.Cleanup(func() {
		unix.Kill(pid, unix.SIGKILL)
		reapWithin(pid, 5*time.Second)
	})
	p.Kill()
	p.Join(context.Background())
	recvCancelled(t, r)
	// It returned: it exits without waiting for the grace.
	if err := reapWithin(pid, 5*time.Second); err != nil {
		t.Fatalf("daemon child after its target returned: %v", err)
	}
}

// returnsWithChild starts a child that sleeps, reports its pid, and
// returns: its process then waits for that child, as Python's does.
var returnsWithChild = mp.RegisterProcCtx("test.returnsWithChild", func(ctx context.Context, out *mp.Conn) error {
	defer out.Close()
	c := mp.NewProcess(fail, "sleep")
	if err := c.Start(); err != nil {
		return err
	}
	return out.Send(c.Pid())
})

// Terminate ends a child whose target has returned and which waits for a
// child of its own: at once if the target had returned, else at the end
// of the grace (the test cannot tell which came first).
func TestTerminateEndsChildWaitingForItsChildren(t *testing.T) {
	adoptOrphans(t)
	r, w := pipe(t, false)
	p := mp.NewProcess(returnsWithChild, w)
	p.CancelGrace = 200 * time.Millisecond
	start(t, p)
	w.Close()
	grandchild := recvPid(t, r)
	t.Cleanup(func() {
		unix.Kill(grandchild, unix.SIGKILL)
		reapWithin(grandchild, 5*time.Second)
	})
	var s string
	r.Recv(&s) // EOF: the target is returning
	p.Terminate()
	err := p.Join(ctxTimeout(t, 10*time.Second))
	if code, _ := p.ExitCode(); code != -15 {
		t.Fatalf("exit code %d (%v), want -15", code, err)
	}
}

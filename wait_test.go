//go:build linux

package mp_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

// ended starts a child that returns at once and waits for it to end.
func ended(t *testing.T) *mp.Process {
	t.Helper()
	p := start(t, mp.NewProcess(fail, ""))
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return p
}

// doneContexts returns a cancelled context and an expired one.
func doneContexts() map[string]context.Context {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	cancel2()
	return map[string]context.Context{"cancelled": cancelled, "expired": expired}
}

// TestReadyWinsOverDoneCtx calls Join on an ended child and Wait on ready
// objects with a ctx that is already done, many times: the ready result is
// returned every time, never ctx.Err().
func TestReadyWinsOverDoneCtx(t *testing.T) {
	p := ended(t)
	a, b := pipe(t, true)
	if err := a.Send(1); err != nil {
		t.Fatal(err)
	}
	for name, ctx := range doneContexts() {
		for i := range 200 {
			if err := p.Join(ctx); err != nil {
				t.Fatalf("%s ctx, call %d: Join of an ended child = %v, want nil", name, i, err)
			}
			ready, err := mp.Wait(ctx, p)
			if err != nil || len(ready) != 1 {
				t.Fatalf("%s ctx, call %d: Wait(ended child) = %v, %v", name, i, ready, err)
			}
			readyConns, err := mp.Wait(ctx, b)
			if err != nil || len(readyConns) != 1 {
				t.Fatalf("%s ctx, call %d: Wait(Conn with a message) = %v, %v", name, i, readyConns, err)
			}
		}
		// Nothing ready: the done ctx is reported at once.
		if ready, err := mp.Wait(ctx, a); !errors.Is(err, ctx.Err()) || len(ready) != 0 {
			t.Errorf("%s ctx: Wait with nothing ready = %v, %v", name, ready, err)
		}
	}
}

// TestWaitReturnsAllReady makes a Conn with a message in its socket, an
// ended child and a Conn with a message in its buffer ready at once, among
// objects that are not ready: Wait returns the three, in the order given.
func TestWaitReturnsAllReady(t *testing.T) {
	a, a2 := pipe(t, true)
	b, b2 := pipe(t, true)
	idle, _ := pipe(t, true)
	p := ended(t)
	if err := a2.Send(1); err != nil {
		t.Fatal(err)
	}
	// b's second message ends up in b's buffer: Recv reads ahead.
	b2.Send(1)
	b2.Send(2)
	var v int
	if err := b.Recv(&v); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Poll(time.Second); !ok || err != nil {
		t.Fatalf("Poll = %v, %v", ok, err)
	}
	want := []mp.Waitable{a, p, b}
	ready, err := mp.Wait[mp.Waitable](ctxTimeout(t, 5*time.Second), a, idle, p, b)
	if err != nil || len(ready) != len(want) {
		t.Fatalf("Wait = %v, %v; want [a p b]", ready, err)
	}
	for i := range want {
		if ready[i] != want[i] {
			t.Fatalf("Wait = %v; want [a p b] in that order", ready)
		}
	}
}

// TestWaitResultIsWhatWasPassed waits on Conns alone, Processes alone and
// both together: the result holds the very objects passed in, usable as
// they are (a *Conn to receive from) and == to them, with no conversion.
func TestWaitResultIsWhatWasPassed(t *testing.T) {
	ctx := ctxTimeout(t, 5*time.Second)
	a, a2 := pipe(t, true)
	idle, _ := pipe(t, true)
	a2.Send(5)
	var conns []*mp.Conn
	conns, err := mp.Wait(ctx, idle, a)
	if err != nil || !slices.Equal(conns, []*mp.Conn{a}) {
		t.Fatalf("Wait(idle, a) = %v, %v; want [a]", conns, err)
	}
	var v int
	if err := conns[0].Recv(&v); err != nil || v != 5 {
		t.Fatalf("Recv on Wait's result = %d, %v", v, err)
	}

	p := ended(t)
	procs, err := mp.Wait(ctx, p)
	if err != nil || len(procs) != 1 || procs[0] != p {
		t.Fatalf("Wait(p) = %v, %v; want [p]", procs, err)
	}
	if code, ok := procs[0].ExitCode(); !ok || code != 0 {
		t.Fatalf("ExitCode on Wait's result = %d, %v", code, ok)
	}

	a2.Send(6)
	both, err := mp.Wait[mp.Waitable](ctx, idle, p, a)
	if err != nil || len(both) != 2 || both[0] != p || both[1] != a {
		t.Fatalf("Wait(idle, p, a) = %v, %v; want [p a]", both, err)
	}

	var nilConn *mp.Conn
	if _, err := mp.Wait(ctx, a, nilConn); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("Wait with a nil *Conn = %v, want os.ErrInvalid", err)
	}
	if _, err := mp.Wait[mp.Waitable](ctx, a, nil); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("Wait with a nil Waitable = %v, want os.ErrInvalid", err)
	}
}

// TestSentinelMadeAsTheChildIsReaped asks for a Sentinel exactly in the
// reaper's window between recording the end (under the Process's lock)
// and closing done. The write end made then used to be kept open for
// ever: the sentinel never became readable, so Wait hung, and the pipe
// leaked.
func TestSentinelMadeAsTheChildIsReaped(t *testing.T) {
	p := mp.NewProcess(fail, "")
	inWindow := make(chan struct{})
	resume := make(chan struct{})
	mp.SetTestHookReaped(func(q *mp.Process) {
		if q == p {
			close(inWindow)
			<-resume
		}
	})
	defer mp.SetTestHookReaped(nil)
	start(t, p)
	<-inWindow
	fd, err := p.Sentinel()
	close(resume)
	if err != nil || fd < 0 {
		t.Fatalf("Sentinel = %d, %v", fd, err)
	}
	// The sentinel reads EOF at once, as it does for any reaped child.
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil {
		t.Fatalf("the sentinel of a reaped child is not readable: poll = %d, %v", n, err)
	}
	if ready, err := mp.Wait(ctxTimeout(t, 5*time.Second), p); err != nil || len(ready) != 1 {
		t.Fatalf("Wait = %v, %v", ready, err)
	}
}

// TestCloseOnceWaitSaysEnded closes a Process as soon as Wait reports it
// ended, while the reaper is still held between recording the end and
// closing done: Close must succeed (it used to return ErrStillRunning, and
// a program doing as ExampleWait does left the sentinel's pipe open).
func TestCloseOnceWaitSaysEnded(t *testing.T) {
	p := mp.NewProcess(fail, "sleep")
	inWindow := make(chan struct{})
	resume := make(chan struct{})
	mp.SetTestHookReaped(func(q *mp.Process) {
		if q == p {
			close(inWindow)
			<-resume
		}
	})
	defer mp.SetTestHookReaped(nil)
	defer close(resume)
	start(t, p)
	if _, err := p.Sentinel(); err != nil { // made while the child runs
		t.Fatal(err)
	}
	p.Kill()
	<-inWindow
	if ready, err := mp.Wait(ctxTimeout(t, 5*time.Second), p); err != nil || len(ready) != 1 {
		t.Fatalf("Wait = %v, %v", ready, err)
	}
	if p.IsAlive() {
		t.Error("IsAlive after Wait reported the end")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close once Wait reported the end = %v", err)
	}
}

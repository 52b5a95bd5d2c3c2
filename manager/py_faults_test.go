//go:build linux

package manager_test

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

// Tests of real CPython clients that misbehave or die, against a manager
// that serves others meanwhile.

// pyBounded makes a script fail, with the stacks of its threads, if it
// runs over 10 s: a call that hangs then fails the test at once rather
// than at runPy's minute.
const pyBounded = `
import faulthandler
faulthandler.dump_traceback_later(10, exit=True)
`

// TestPythonNonPositiveWaitTimeouts: a wait given a timeout of zero or
// less does not wait, as in Python: Condition.wait returns False (the
// lock held again), Event.wait the flag, and Barrier.wait of a party
// that is not the last breaks the barrier (BrokenBarrierError). A
// negative timeout used to wait for ever.
func TestPythonNonPositiveWaitTimeouts(t *testing.T) {
	_, env := pyManager(t)
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, pyBounded+`
import threading
for timeout in (0, -1, -1e300):
    c = m.Condition()
    assert c.acquire()
    assert c.wait(timeout) is False, timeout
    c.release()
    e = m.Event()
    assert e.wait(timeout) is False, timeout
    e.set()
    assert e.wait(timeout) is True, timeout
    b = m.Barrier(2)
    try:
        b.wait(timeout)
        raise SystemExit("Barrier.wait(%r) returned" % timeout)
    except threading.BrokenBarrierError:
        pass
    assert b.broken
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
	})
}

// TestPythonKilledMidRequestGivesBack: a Python process holding a Lock,
// an RLock (twice), a unit of a BoundedSemaphore and of a Semaphore,
// with a thread waiting in a Condition, one waiting at a Barrier, and
// half a request sent (a Lock's release), is SIGKILLed. The half request
// is never served; the Lock and RLock go to the next acquirers, who are
// told their holder died; the BoundedSemaphore's unit comes back and the
// Semaphore's does not (a Semaphore's units are anyone's to release, as
// in Python); the Condition's lock is free and a Notify reaches the live
// waiter; the Barrier is broken, so that the party waiting there with
// the dead one gets BrokenBarrier rather than waiting for ever.
func TestPythonKilledMidRequestGivesBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eachPython(t, func(t *testing.T, py string) {
		m, env := pyManager(t) // a server of its own: the named objects are new
		L := must[*manager.Lock](t)(manager.NewLock(ctx, m, manager.Named("L")))
		R := must[*manager.RLock](t)(manager.NewRLock(ctx, m, manager.Named("R")))
		S := must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 1, manager.Named("S")))
		P := must[*manager.Semaphore](t)(manager.NewSemaphore(ctx, m, 1, manager.Named("P")))
		C := must[*manager.Condition](t)(manager.NewCondition(ctx, m, nil, manager.Named("C")))
		B := must[*manager.Barrier](t)(manager.NewBarrier(ctx, m, 3, 0, manager.Named("B")))
		clients := must[manager.Stats](t)(m.Stats(ctx)).Clients
		cmd := exec.CommandContext(ctx, py, "-c", pyPrelude+`
import pickle, socket, struct
from multiprocessing import connection
from multiprocessing.managers import AcquirerProxy, BarrierProxy, ConditionProxy
class M(BaseManager): pass
for n in "LRSP":
    M.register("get_" + n, proxytype=AcquirerProxy)
M.register("get_C", proxytype=ConditionProxy)
M.register("get_B", proxytype=BarrierProxy)
mm = M(address=mp_address(), authkey=KEY)
mm.connect()
L, R, S, P, C, B = mm.get_L(), mm.get_R(), mm.get_S(), mm.get_P(), mm.get_C(), mm.get_B()
assert L.acquire() and R.acquire() and R.acquire() and S.acquire() and P.acquire()
def cond_wait():
    assert C.acquire()
    C.wait()
threading.Thread(target=cond_wait, daemon=True).start()
threading.Thread(target=B.wait, daemon=True).start()
c = connection.Client(mp_address(), authkey=KEY)
c.send((None, "accept_connection", ("half",), {}))
assert c.recv() == ("#RETURN", None)
req = pickle.dumps((L._token.id, "release", (), {}))
s = socket.socket(fileno=os.dup(c.fileno()))
s.sendall(struct.pack("!i", len(req)) + req[:len(req) // 2])
print("held", flush=True)
time.sleep(60)
`)
		cmd.Env = env
		stdout, err := cmd.StdoutPipe()
		check(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		check(t, cmd.Start())
		defer cmd.Wait()
		defer cmd.Process.Kill()
		line := make([]byte, 5)
		if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "held\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the victim said %q, %v; stderr:\n%s", line, err, stderr.String())
		}
		// A Go party at the Barrier, and a Go waiter in the Condition
		// behind the victim's.
		barrierErr := make(chan error, 1)
		go func() { _, err := B.Wait(ctx); barrierErr <- err }()
		condErr := make(chan error, 1)
		go func() {
			condErr <- func() error {
				if err := C.Acquire(ctx); err != nil {
					return err
				}
				defer C.Release(ctx)
				return C.Wait(ctx)
			}()
		}()
		waitFor(t, func() bool { return serverWaiters(t, m) == 4 }) // two waits each at the Barrier and the Condition

		check(t, cmd.Process.Kill())
		cmd.Wait()
		waitFor(t, func() bool { return must[manager.Stats](t)(m.Stats(ctx)).Clients == clients })

		within, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		var died *mp.OwnerDiedError
		if err := L.Acquire(within); !errors.As(err, &died) || died.Pid != cmd.Process.Pid {
			t.Fatalf("Lock's Acquire after the holder died: %v, want an *mp.OwnerDiedError for pid %d (the half request must not have released it)", err, cmd.Process.Pid)
		}
		check(t, L.Release(ctx))
		if err := R.Acquire(within); !errors.Is(err, mp.ErrOwnerDied) {
			t.Fatalf("RLock's Acquire after the holder died: %v, want mp.ErrOwnerDied", err)
		}
		held, depth, err := R.Held(ctx)
		check(t, err)
		equal(t, "RLock held at depth", [2]any{held, depth}, [2]any{true, 1})
		check(t, R.Release(ctx))
		equal(t, "BoundedSemaphore value", must[int](t)(S.Value(ctx)), 1)
		equal(t, "Semaphore value", must[int](t)(P.Value(ctx)), 0)
		select {
		case err := <-barrierErr:
			if !errors.Is(err, mp.ErrBrokenBarrier) {
				t.Fatalf("the live party's Barrier.Wait: %v, want mp.ErrBrokenBarrier", err)
			}
		case <-within.Done():
			t.Fatal("the live party still waits at the Barrier after the other one died")
		}
		if err := C.Acquire(within); err != nil && !errors.Is(err, mp.ErrOwnerDied) {
			t.Fatalf("Condition's Acquire after the victim died: %v", err)
		}
		check(t, C.Notify(ctx, 1))
		check(t, C.Release(ctx))
		select {
		case err := <-condErr:
			check(t, err)
		case <-within.Done():
			t.Fatal("Notify(1) did not wake the live waiter: the dead one's wait took it")
		}
	})
}

// TestPythonCannotShutDownStartedServer: a Python client's shutdown
// request is refused (PermissionError) even by the server Start started,
// which lets its Go starter stop it: no Python client owns a Go server
// (CPython's own clients send shutdown only to a server their process
// started), so one that sends it is hostile, and the server goes on
// serving the others.
func TestPythonCannotShutDownStartedServer(t *testing.T) {
	m, env := pyManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
	check(t, d.Set(ctx, "k", 1))
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, pyBounded+`
from multiprocessing import connection
from multiprocessing.managers import dispatch
c = connection.Client(mp_address(), authkey=KEY)
try:
    dispatch(c, None, "shutdown")
    print("shut down")
except PermissionError:
    print("refused")
`)
		if strings.TrimSpace(out) != "refused" {
			t.Fatalf("script printed %q", out)
		}
		if v, ok, err := d.Get(ctx, "k"); err != nil || !ok || v != 1 {
			t.Fatalf("the Go client after Python's shutdown: %v %v %v", v, ok, err)
		}
	})
}

// TestPythonReleaseNUncountsItsUnits: a Python process that acquires two
// units of a BoundedSemaphore and gives both back with release(2) holds
// none: when it ends, no unit is given back for it, so that the value
// stays what the Go client's unit left (a unit given back would raise
// it, below the bound).
func TestPythonReleaseNUncountsItsUnits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eachPython(t, func(t *testing.T, py string) {
		m, env := pyManager(t) // a server of its own: the named object is new
		S := must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 3, manager.Named("S")))
		check(t, S.Acquire(ctx))
		defer S.Release(ctx)
		clients := must[manager.Stats](t)(m.Stats(ctx)).Clients
		out := runPy(t, py, env, pyBounded+`
from multiprocessing.managers import AcquirerProxy
class M(BaseManager): pass
M.register("get_S", proxytype=AcquirerProxy)
mm = M(address=mp_address(), authkey=KEY)
mm.connect()
S = mm.get_S()
assert S.acquire() and S.acquire()
S._callmethod("release", (2,))
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
		waitFor(t, func() bool { return must[manager.Stats](t)(m.Stats(ctx)).Clients == clients })
		equal(t, "BoundedSemaphore value after the Python process ended", must[int](t)(S.Value(ctx)), 2)
	})
}

//go:build linux

package manager_test

import (
	"strings"
	"testing"
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

//go:build linux

package manager_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/pytest"
	"github.com/go-mp/mp/manager"
)

// Tests of CPython clients (Server.Python) against real interpreters.

// eachPython runs f in a subtest per interpreter (see pytest.Each): py
// is the interpreter's path.
func eachPython(t *testing.T, f func(t *testing.T, py string)) {
	pytest.Each(t, func(t *testing.T, py pytest.Interp) { f(t, py.Path) })
}

// pyManager starts a manager that serves Python clients, and returns it
// with the environment that pyPrelude reads.
func pyManager(t *testing.T) (*manager.Manager, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := manager.Start(ctx, &manager.Options{Python: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, pyEnv(m.Network(), m.Address(), mp.CurrentProcess().Authkey)
}

// pyEnv is the environment that tells pyPrelude where the manager is.
func pyEnv(network, address string, key []byte) []string {
	return append(os.Environ(), "MP_NETWORK="+network, "MP_ADDRESS="+address, "MP_KEY="+hex.EncodeToString(key))
}

// pyPrelude connects m, a SyncManager, to the server the environment
// names.
const pyPrelude = `
import os, sys, time, threading
from multiprocessing.managers import SyncManager, BaseManager
def mp_address():
    a = os.environ["MP_ADDRESS"]
    if os.environ["MP_NETWORK"] == "unix":
        return "\0" + a[1:] if a.startswith("@") else a
    host, port = a.rsplit(":", 1)
    return (host, int(port))
KEY = bytes.fromhex(os.environ["MP_KEY"])
if not os.environ.get("MP_NO_CONNECT"):
    m = SyncManager(address=mp_address(), authkey=KEY)
    m.connect()
`

// runPy runs script (after pyPrelude) with py and returns its standard
// output; it fails the test if the script fails.
func runPy(t *testing.T, py string, env []string, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyPrelude+script)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", py, err, out, stderr.String())
	}
	return string(out)
}

func TestPythonDictListValueLock(t *testing.T) {
	_, env := pyManager(t)
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, `
d = m.dict({"a": 1}, b=2)
d["c"] = [1, 2.5, "x", b"y", None, True, (3, 4)]
d[(1, 2)] = {"k": -5}
assert d["a"] == 1 and d["b"] == 2, d.copy()
assert d["c"] == [1, 2.5, "x", b"y", None, True, [3, 4]], d["c"]
assert d[(1, 2)] == {"k": -5}
assert len(d) == 4 and "a" in d and "zz" not in d
assert d.get("zz") is None and d.get("zz", 7) == 7
try:
    d["zz"]
    raise SystemExit("no KeyError")
except KeyError as e:
    assert e.args == ("zz",), e.args
assert sorted(k for k in d if isinstance(k, str)) == ["a", "b", "c"]
assert d.pop("b") == 2 and d.pop("b", 9) == 9
assert d.setdefault("n", 10) == 10 and d.setdefault("n", 11) == 10
d.update({"u": 1}, v=2)
assert d.popitem() == ("v", 2)
assert (1, 2) in d.keys()
del d["u"]
assert dict(d) == d.copy() == d._getvalue()
assert 2**100 == m.dict({"big": 2**100})["big"]
r = m.dict()
r["a"] = [1, 2.5, "it's", None, b"\x00", (1,), 1e20, 0.0001, 123456789.0]
r[2] = {"x": True}
assert str(r) == repr(r._getvalue()), (str(r), repr(r._getvalue()))
o = m.dict()
for k in "zyxa":
    o[k] = {"q": 1, "b": 2}
assert list(o.copy()) == list("zyxa") and list(o._getvalue()) == list("zyxa") and list(o.keys()) == list("zyxa")
assert str(o) == repr(o.copy())
assert str(m.list([1.0, "\n\u00e9"])) == repr([1.0, "\n\u00e9"])

l = m.list([3, 1, 2])
l.append(5); l.extend([4, 0]); l.insert(0, 9)
assert l[:] == [9, 3, 1, 2, 5, 4, 0], l[:]
assert l[0] == 9 and l[-1] == 0 and l[1:3] == [3, 1] and l[::2] == [9, 1, 5, 0] and l[::-1] == [0, 4, 5, 2, 1, 3, 9]
assert len(l) == 7 and 5 in l and 42 not in l
assert l.index(5) == 4 and l.count(1) == 1
l.sort(); assert l[:] == [0, 1, 2, 3, 4, 5, 9]
l.sort(reverse=True); assert l[:] == [9, 5, 4, 3, 2, 1, 0]
l.reverse(); l.remove(9); assert l.pop() == 5 and l.pop(0) == 0
l[0] = "one"; del l[1]
assert l[:] == ["one", 3, 4], l[:]
try:
    l[10]
    raise SystemExit("no IndexError")
except IndexError:
    pass
try:
    l.remove(42)
    raise SystemExit("no ValueError")
except ValueError:
    pass
l += [7]; assert l + [8] == ["one", 3, 4, 7, 8] and l * 2 == ["one", 3, 4, 7] * 2
assert list(reversed(l)) == [7, 4, 3, "one"]

v = m.Value("i", 0)
assert v.value == 0
v.value = 25
assert v.get() == 25
v.set("text")
assert v.value == "text"

lock = m.Lock()
assert lock.acquire()
assert not lock.acquire(False)
assert not lock.acquire(True, 0.05)
lock.release()
try:
    lock.release()
    raise SystemExit("no RuntimeError")
except RuntimeError:
    pass
with lock:
    pass
r = m.RLock()
with r:
    with r:
        pass
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
	})
}

func TestPythonSyncTypes(t *testing.T) {
	_, env := pyManager(t)
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, `
import queue
q = m.Queue()
q.put(1); q.put_nowait("two"); q.put([3])
assert q.qsize() == 3 and not q.empty() and not q.full()
assert q.get() == 1 and q.get_nowait() == "two" and q.get(True, 1) == [3]
assert q.empty()
for call in (lambda: q.get_nowait(), lambda: q.get(False), lambda: q.get(True, 0.05), lambda: q.get(timeout=0.05)):
    try:
        call()
        raise SystemExit("no queue.Empty")
    except queue.Empty:
        pass
bq = m.Queue(1)
bq.put(1)
assert bq.full()
try:
    bq.put(2, timeout=0.05)
    raise SystemExit("no queue.Full")
except queue.Full:
    pass
jq = m.JoinableQueue()
jq.put("job")
def worker():
    jq.get(); jq.task_done()
th = threading.Thread(target=worker); th.start()
jq.join(); th.join()
try:
    jq.task_done()
    raise SystemExit("no ValueError")
except ValueError:
    pass

s = m.Semaphore(2)
assert s.acquire() and s.acquire(True) and not s.acquire(False) and not s.acquire(timeout=0.05)
s.release(); s.release()
assert s.acquire(False)
bs = m.BoundedSemaphore(1)
try:
    bs.release()
    raise SystemExit("no ValueError")
except ValueError:
    pass

e = m.Event()
assert not e.is_set() and not e.wait(0.05)
threading.Timer(0.1, e.set).start()
assert e.wait(5) and e.is_set()
e.clear(); assert not e.is_set()

cl = m.Lock()
c2 = m.Condition(cl)
with c2:
    assert not cl.acquire(False)
    assert not c2.wait(0.01)
assert cl.acquire(False)
cl.release()

c = m.Condition()
box = []
def notifier():
    with c:
        box.append(1)
        c.notify()
with c:
    threading.Thread(target=notifier).start()
    assert c.wait_for(lambda: box, 5)
    assert not c.wait(0.05)
    c.notify_all()
try:
    c.wait(0.01)
    raise SystemExit("no RuntimeError")
except RuntimeError:
    pass

b = m.Barrier(2)
assert b.parties == 2 and b.n_waiting == 0 and not b.broken
res = []
th = threading.Thread(target=lambda: res.append(b.wait()))
th.start()
res.append(b.wait()); th.join()
assert sorted(res) == [0, 1], res
try:
    b.wait(0.05)
    raise SystemExit("no BrokenBarrierError")
except threading.BrokenBarrierError:
    pass
assert b.broken
b.reset(); assert not b.broken

a = m.Array("d", [1, 2, 3.5])
assert len(a) == 3 and a[0] == 1.0 and isinstance(a[0], float) and a[:] == [1.0, 2.0, 3.5]
a[1] = 7
assert a[1] == 7.0
try:
    a[5] = 1
    raise SystemExit("no IndexError")
except IndexError:
    pass
ia = m.Array("i", range(3))
assert ia[:] == [0, 1, 2]
assert m.list(range(10, 0, -3))[:] == [10, 7, 4, 1]
try:
    ia[0] = 1.5
    raise SystemExit("no TypeError")
except TypeError:
    pass

ns = m.Namespace(x=1)
ns.y = "why"
assert ns.x == 1 and ns.y == "why"
del ns.x
try:
    ns.x
    raise SystemExit("no AttributeError")
except AttributeError:
    pass
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
	})
}

// TestPythonSharesWithGo: Python clients reach named objects of Go
// clients (get_NAME) and both see each other's values.
func TestPythonSharesWithGo(t *testing.T) {
	m, env := pyManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jobs := must[*manager.Queue[string]](t)(manager.NewQueue[string](ctx, m, 0, manager.Named("jobs")))
	counts := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m, manager.Named("counts")))
	type point struct{ X, Y int }
	pts := must[*manager.List[point]](t)(manager.NewList(ctx, m, []point{{1, 2}}, manager.Named("points")))
	eachPython(t, func(t *testing.T, py string) {
		if err := jobs.Put(ctx, "from go"); err != nil {
			t.Fatal(err)
		}
		if err := counts.Set(ctx, "go", 7); err != nil {
			t.Fatal(err)
		}
		out := runPy(t, py, env, `
class M(BaseManager): pass
for name in ("jobs", "counts", "points", "nothing"):
    M.register("get_" + name)
mm = M(address=mp_address(), authkey=KEY)
mm.connect()
jobs, counts, points = mm.get_jobs(), mm.get_counts(), mm.get_points()
assert jobs.get(timeout=5) == "from go"
jobs.put("from python")
assert counts["go"] == 7, counts.copy()
counts["py"] = 42
assert points[0] == {"X": 1, "Y": 2}, points[0]
points.append({"X": 3, "Y": 4})
try:
    mm.get_nothing()
    raise SystemExit("no KeyError")
except KeyError:
    pass
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
		if v, err := jobs.Get(ctx); err != nil || v != "from python" {
			t.Fatalf("Go got %q, %v from the queue", v, err)
		}
		if v, ok, err := counts.Get(ctx, "py"); err != nil || !ok || v != 42 {
			t.Fatalf("Go got %v %v %v from the dict", v, ok, err)
		}
		got, err := pts.Slice(ctx, 0, 10)
		if err != nil || len(got) != 2 || got[1] != (point{3, 4}) {
			t.Fatalf("Go got %v, %v from the list", got, err)
		}
		if _, err := pts.Pop(ctx, -1); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPythonWrongKey: a client with another key is refused.
func TestPythonWrongKey(t *testing.T) {
	m, _ := pyManager(t)
	env := append(pyEnv(m.Network(), m.Address(), []byte("not the key")), "MP_NO_CONNECT=1")
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, `
from multiprocessing import AuthenticationError
try:
    m = SyncManager(address=mp_address(), authkey=KEY)
    m.connect()
    print("connected")
except AuthenticationError:
    print("refused")
`)
		if strings.TrimSpace(out) != "refused" {
			t.Fatalf("a client with a wrong key: %q", out)
		}
	})
}

// TestPythonSeedScripts runs the classic multiprocessing scripts, with
// child processes, against the Go server.
func TestPythonSeedScripts(t *testing.T) {
	_, env := pyManager(t)
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, `
from multiprocessing import Process

def set25(v):
    v.value = 25

def add(v, lock, n, step):
    for _ in range(n):
        with lock:
            v.value += step

def producer(q, n, consumers):
    for i in range(n):
        q.put(i)
    for _ in range(consumers):
        q.put(None)

def consumer(q, results):
    total = 0
    while True:
        x = q.get()
        if x is None:
            break
        total += x
    results.put(total)

if __name__ == "__main__":
    v = m.Value("i", 0)
    ps = [Process(target=set25, args=(v,)) for _ in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
    assert v.value == 25, v.value

    v = m.Value("i", 0)
    lock = m.Lock()
    ps = [Process(target=add, args=(v, lock, 10000, 1)), Process(target=add, args=(v, lock, 10000, -1))]
    for p in ps: p.start()
    for p in ps: p.join()
    assert all(p.exitcode == 0 for p in ps)
    assert v.value == 0, v.value

    q, results = m.Queue(), m.Queue()
    n, nc = 2000, 3
    ps = [Process(target=producer, args=(q, n, nc))] + [Process(target=consumer, args=(q, results)) for _ in range(nc)]
    for p in ps: p.start()
    for p in ps: p.join()
    assert sum(results.get() for _ in range(nc)) == n * (n - 1) // 2
    print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
	})
}

// TestPythonKilledHoldingLock: a Python client killed while it holds a
// manager Lock gives it back: the next acquirer, Go or Python, gets it.
func TestPythonKilledHoldingLock(t *testing.T) {
	m, env := pyManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lock := must[*manager.Lock](t)(manager.NewLock(ctx, m, manager.Named("L")))
	register := `
class M(BaseManager): pass
M.register("get_L")
mm = M(address=mp_address(), authkey=KEY)
mm.connect()
L = mm.get_L()
`
	eachPython(t, func(t *testing.T, py string) {
		cmd := exec.CommandContext(ctx, py, "-c", pyPrelude+register+`
assert L.acquire()
print("held", flush=True)
time.sleep(60)
`)
		cmd.Env = env
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line := make([]byte, 5)
		if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "held\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the holder said %q, %v; stderr:\n%s", line, err, stderr.String())
		}
		// The lock is held by the Python process: Go cannot take it.
		tctx, tcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err = lock.Acquire(tctx)
		tcancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire while Python holds the lock: %v", err)
		}
		cmd.Process.Kill()
		cmd.Wait()
		var died *mp.OwnerDiedError
		if err := lock.Acquire(ctx); !errors.As(err, &died) || died.Pid != cmd.Process.Pid {
			t.Fatalf("Acquire after the holder died: %v, want an *mp.OwnerDiedError naming pid %d", err, cmd.Process.Pid)
		}
		if err := lock.Release(ctx); err != nil {
			t.Fatal(err)
		}
		out := runPy(t, py, env, register+`
assert L.acquire(True, 10)
L.release()
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
	})
}

// TestPythonNestedProxies: proxies stored in values, as CPython's
// managers allow, cross between the languages: a Python client reads a
// Go client's stored proxy as a working proxy, and the reverse.
func TestPythonNestedProxies(t *testing.T) {
	m, env := pyManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	outer := must[*manager.Dict[string, *manager.List[int]]](t)(manager.NewDict[string, *manager.List[int]](ctx, m, manager.Named("outer")))
	eachPython(t, func(t *testing.T, py string) {
		golist := must[*manager.List[int]](t)(manager.NewList(ctx, m, []int{7}))
		if err := outer.Set(ctx, "go", golist); err != nil {
			t.Fatal(err)
		}
		out := runPy(t, py, env, `
import multiprocessing
multiprocessing.current_process().authkey = KEY  # as for nested proxies of any manager
class M(BaseManager): pass
M.register("get_outer")
mm = M(address=mp_address(), authkey=KEY)
mm.connect()
outer = mm.get_outer()
g = outer["go"]
assert g[:] == [7], g[:]
g.append(8)
outer["py"] = m.list([1])
outer["py"].append(2)
d = m.dict()
d["l"] = m.list(["x"])
d["l"].append("y")
assert d["l"][:] == ["x", "y"]
d["q"] = m.Queue()
d["q"].put(5)
assert d["q"].get() == 5
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
		if got, err := golist.All(ctx); err != nil || len(got) != 2 || got[1] != 8 {
			t.Fatalf("the Go list after Python: %v, %v", got, err)
		}
		pl, ok, err := outer.Get(ctx, "py")
		if err != nil || !ok {
			t.Fatalf("the list Python stored: %v %v", ok, err)
		}
		if got, err := pl.All(ctx); err != nil || len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Fatalf("the list Python stored holds %v, %v", got, err)
		}
	})
}

// TestPythonAutoProxyOfEveryKind: a Python client that registers get_NAME
// without a proxy type gets an AutoProxy built from the methods the
// server lists, whatever the kind of the named object. A Barrier's and a
// Namespace's attribute hooks (__getattribute__, __setattr__) are not
// listed: an AutoProxy that defined them would send its own attribute
// lookups to the server, and its construction ended in a RecursionError.
func TestPythonAutoProxyOfEveryKind(t *testing.T) {
	m, env := pyManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must[*manager.Barrier](t)(manager.NewBarrier(ctx, m, 1, 0, manager.Named("B")))
	must[*manager.Namespace](t)(manager.NewNamespace(ctx, m, manager.Named("N")))
	eachPython(t, func(t *testing.T, py string) {
		out := runPy(t, py, env, `
class M(BaseManager): pass
M.register("get_B")
M.register("get_N")
mm = M(address=mp_address(), authkey=KEY)
mm.connect()
b = mm.get_B()
assert b.wait() == 0
b.reset()
n = mm.get_N()
print("ok")
`)
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("script printed %q", out)
		}
	})
}

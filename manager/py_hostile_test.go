//go:build linux

package manager

import (
	"context"
	"log/slog"
	"math"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/logtest"
	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
	"golang.org/x/sys/unix"
)

// Tests of Python clients that break the rules, played by Go, against a
// server in this process: nothing they send runs, each gets a typed reply
// (or is hung up on), and the server keeps serving the others.

// pyConn is a raw connection of a played Python client.
type pyConn struct {
	t *testing.T
	c *mp.Conn
}

func dialPy(t *testing.T, m *Manager) *pyConn {
	t.Helper()
	c, err := connection.Dial(hostileCtx(t), m.Network(), m.Address(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &pyConn{t, c}
}

// send sends raw bytes.
func (p *pyConn) send(b []byte) {
	p.t.Helper()
	if err := p.c.SendBytes(b); err != nil {
		p.t.Fatal(err)
	}
}

// call sends a request (id, name, args, kwds) and returns the reply's
// kind and value.
func (p *pyConn) call(id any, name string, args ...any) (string, any) {
	p.t.Helper()
	b, err := pickle.Encode(ogórek.Tuple{id, name, ogórek.Tuple(args), ogórek.NewDict()}, pickle.Options{})
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(b)
	return p.recv()
}

func (p *pyConn) recv() (string, any) {
	p.t.Helper()
	b, err := p.c.RecvBytes(0)
	if err != nil {
		p.t.Fatalf("no reply: %v", err)
	}
	v, err := pickle.Decode(b, pickle.Options{Allow: []ogórek.Class{excValueError, excTypeError, excMemoryError,
		excKeyError, excAttributeError, excPermission, pyTokenClass}})
	if err != nil {
		p.t.Fatal(err)
	}
	t, ok := v.(ogórek.Tuple)
	if !ok || len(t) != 2 {
		p.t.Fatalf("reply %#v", v)
	}
	kind, _ := t[0].(string)
	return kind, t[1]
}

// wantExc checks that a reply raises cls.
func wantExc(t *testing.T, kind string, v any, cls ogórek.Class) {
	t.Helper()
	c, ok := v.(ogórek.Call)
	if kind != "#ERROR" || !ok || c.Callable != cls {
		t.Fatalf("reply %s %#v, want %s", kind, v, cls.Name)
	}
}

func TestPythonHostileRequests(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	d, err := NewDict[string, int](ctx, m, Named("d"))
	if err != nil {
		t.Fatal(err)
	}
	d.Set(ctx, "k", 1)

	// A pickle naming a function outside the allow-list is refused
	// before anything is made of it.
	evil := ogórek.Call{Callable: ogórek.Class{Module: "os", Name: "system"}, Args: ogórek.Tuple{"touch /tmp/mp-pwned"}}
	kind, v := dialPy(t, m).call(nil, "create", "dict", evil)
	if s, _ := v.(string); kind != "#TRACEBACK" || !strings.Contains(s, "os.system is not allowed") {
		t.Fatalf("a pickle naming os.system: %s %#v", kind, v)
	}
	// Unknown typeids and functions, and methods of no object.
	kind, v = dialPy(t, m).call(nil, "create", "Pool")
	wantExc(t, kind, v, excValueError)
	kind, v = dialPy(t, m).call(nil, "exec", "print(1)")
	wantExc(t, kind, v, excValueError)
	kind, v = dialPy(t, m).call(nil, "shutdown")
	wantExc(t, kind, v, excPermission)
	// Not a request, or not a pickle at all past its first bytes.
	for _, junk := range [][]byte{[]byte("\x80\x04garbage"), []byte("\x80\x05N."), []byte("\x80\x04K\x01K\x02\x86.")} {
		p := dialPy(t, m)
		p.send(junk)
		if kind, _ := p.recv(); kind != "#TRACEBACK" {
			t.Fatalf("%q: reply %s", junk, kind)
		}
	}
	// A stored proxy must name an object of this server.
	forged := ogórek.Call{Callable: pyRebuildProxy, Args: ogórek.Tuple{
		ogórek.Class{Module: "multiprocessing.managers", Name: "DictProxy"},
		&pickle.Object{Class: pyTokenClass, New: true, State: ogórek.Tuple{"dict", nil, "123456789abcdef"}},
		"pickle", ogórek.NewDict()}}
	kind, v = dialPy(t, m).call(nil, "create", "list", []any{forged})
	wantExc(t, kind, v, excTypeError)
	// Nesting beyond what the store takes.
	var deep any = "x"
	for range 200 {
		deep = []any{deep}
	}
	kind, v = dialPy(t, m).call(nil, "create", "list", deep)
	wantExc(t, kind, v, excTypeError)

	// A proxy connection: bad calls get typed replies and the
	// connection goes on.
	kind, v = dialPy(t, m).call(nil, "create", "get_d")
	if kind != "#RETURN" {
		t.Fatalf("get_d: %s %#v", kind, v)
	}
	ident := v.(ogórek.Tuple)[0].(string)
	p := dialPy(t, m)
	if kind, _ := p.call(nil, "accept_connection", "hostile"); kind != "#RETURN" {
		t.Fatal(kind)
	}
	kind, v = p.call("123456789abcdef", "__getitem__", "k")
	wantExc(t, kind, v, excKeyError)
	kind, v = p.call(ident, "__class__")
	wantExc(t, kind, v, excAttributeError)
	kind, v = p.call(ident, "__getitem__", "k", "extra")
	wantExc(t, kind, v, excTypeError)
	p.send([]byte("\x80\x04garbage"))
	if kind, _ := p.recv(); kind != "#TRACEBACK" {
		t.Fatal(kind)
	}
	if kind, v := p.call(ident, "__getitem__", "k"); kind != "#RETURN" || v != int64(1) {
		t.Fatalf("a good call after bad ones: %s %#v", kind, v)
	}

	// Python drops only its own references: more decrefs than increfs
	// leave the Go client's dict alone.
	for range 3 {
		dialPy(t, m).call(nil, "decref", ident)
	}
	if v, ok, err := d.Get(ctx, "k"); err != nil || !ok || v != 1 {
		t.Fatalf("the Go client's dict after Python's decrefs: %v %v %v", v, ok, err)
	}
}

// TestPythonSilentClients: Python clients that connect and say nothing,
// or wait in a Lock's acquire, hold nobody up; one that sends a request
// while its call waits is hung up on, and its wait ends.
func TestPythonSilentClients(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	l, err := NewLock(ctx, m, Named("L"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	_, v := dialPy(t, m).call(nil, "create", "get_L")
	ident := v.(ogórek.Tuple)[0].(string)
	for range 20 {
		dialPy(t, m) // authenticated, silent
	}
	var waiters []*pyConn
	for range 5 {
		p := dialPy(t, m)
		p.call(nil, "accept_connection", "waiter")
		b, _ := pickle.Encode(ogórek.Tuple{ident, "acquire", ogórek.Tuple{}, ogórek.NewDict()}, pickle.Options{})
		p.send(b)
		waiters = append(waiters, p)
	}
	d, err := NewDict[int, int](ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	// Out of protocol: a second request while the first waits.
	b, _ := pickle.Encode(ogórek.Tuple{ident, "release", ogórek.Tuple{}, ogórek.NewDict()}, pickle.Options{})
	waiters[0].send(b)
	if _, err := waiters[0].c.RecvBytes(0); err == nil {
		t.Fatal("a request during a wait was answered")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// One of the other waiters gets the lock: whichever the server queued
	// first (their requests come on separate connections, so their order
	// is not the order they were sent in); the others keep waiting.
	var got *pyConn
	for deadline := time.Now().Add(30 * time.Second); got == nil; {
		if time.Now().After(deadline) {
			t.Fatal("no waiter got the lock once it was released")
		}
		for _, w := range waiters[1:] {
			if ok, err := w.c.Poll(time.Millisecond); err != nil {
				t.Fatal(err)
			} else if ok {
				got = w
				break
			}
		}
	}
	if kind, v := got.recv(); kind != "#RETURN" || v != true {
		t.Fatalf("acquire: %s %#v", kind, v)
	}
	for _, w := range waiters[1:] {
		if ok, _ := w.c.Poll(50 * time.Millisecond); ok && w != got {
			t.Fatal("two waiters were answered for one release")
		}
	}

}

// TestPythonPublicFunctions: the server's other public functions, and a
// shutdown refused by a server that allows Go clients to stop it.
func TestPythonPublicFunctions(t *testing.T) {
	ctx := hostileCtx(t)
	s := &Server{Python: true, AllowShutdown: true}
	s.init() // before Serve's goroutine: the test reads s.stopCtx
	m := serveHere(t, s, "unix")
	if _, err := NewDict[string, int](ctx, m, Named("d")); err != nil {
		t.Fatal(err)
	}
	_, v := dialPy(t, m).call(nil, "create", "get_d")
	ident := v.(ogórek.Tuple)[0].(string)
	tok := &pickle.Object{Class: pyTokenClass, New: true, State: ogórek.Tuple{"get_d", nil, ident}}
	if kind, v := dialPy(t, m).call(nil, "get_methods", tok); kind != "#RETURN" || len(v.(ogórek.Tuple)) != len(pyExposedOf[kindDict]) {
		t.Fatalf("get_methods: %s %#v", kind, v)
	}
	if kind, v := dialPy(t, m).call(nil, "number_of_objects"); kind != "#RETURN" || v != int64(1) {
		t.Fatalf("number_of_objects: %s %#v", kind, v)
	}
	if kind, v := dialPy(t, m).call(nil, "debug_info"); kind != "#RETURN" || !strings.Contains(v.(string), "<dict>") {
		t.Fatalf("debug_info: %s %#v", kind, v)
	}
	// Even a server that lets Go clients stop it refuses Python's
	// shutdown (see TestPythonCannotShutDownStartedServer).
	kind, v := dialPy(t, m).call(nil, "shutdown")
	wantExc(t, kind, v, excPermission)
	if s.stopCtx.Err() != nil {
		t.Fatal("a Python client stopped the server")
	}
}

// TestPythonUnreadRepliesHoldNothing: a client that sends requests and
// reads no replies ends up blocking the server's send to it; that must
// not hold the object its request was about (a sort holds its list's
// lock while it works).
func TestPythonUnreadRepliesHoldNothing(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	l, err := NewList[int](ctx, m, []int{3, 1, 2}, Named("L"))
	if err != nil {
		t.Fatal(err)
	}
	_, v := dialPy(t, m).call(nil, "create", "get_L")
	ident := v.(ogórek.Tuple)[0].(string)
	p := dialPy(t, m)
	p.call(nil, "accept_connection", "flooder")
	req, _ := pickle.Encode(ogórek.Tuple{ident, "sort", ogórek.Tuple{}, ogórek.NewDict()}, pickle.Options{})
	var sent atomic.Int64
	go func() {
		for p.c.SendBytes(req) == nil {
			sent.Add(1)
		}
	}()
	// Wait until the flood stalls: the server no longer reads it, its
	// send of a reply blocked.
	for last := int64(-1); ; {
		time.Sleep(200 * time.Millisecond)
		if n := sent.Load(); n == last && n > 0 {
			break
		} else {
			last = n
		}
		if ctx.Err() != nil {
			t.Fatal("the flood never stalled")
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := l.Len(lctx); err != nil || n != 3 {
		t.Fatalf("the list while a client reads no replies: %d, %v", n, err)
	}
	p.c.Close()
}

// TestPythonCloseEndsBlockedThreads: the end of Serve ends the
// connections of Python proxy threads, one waiting for its next request
// and one blocked writing a reply that its client does not read: each is
// a thread of its own in poll(2) or write(2) on a descriptor out of the
// runtime's poller (see py_sock.go), which closing the socket would not
// end; shutdown(2) does.
func TestPythonCloseEndsBlockedThreads(t *testing.T) {
	ctx := hostileCtx(t)
	l, err := connection.Listen("unix", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- (&Server{Python: true}).Serve(sctx, l) }()
	m := connectHere(t, "unix", l.Addr().String())
	d, err := NewDict[string, string](ctx, m, Named("d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "big", strings.Repeat("x", 8<<20)); err != nil {
		t.Fatal(err)
	}
	_, v := dialPy(t, m).call(nil, "create", "get_d")
	ident := v.(ogórek.Tuple)[0].(string)

	reader := dialPy(t, m)
	reader.call(nil, "accept_connection", "reader")
	if kind, v := reader.call(ident, "__len__"); kind != "#RETURN" || v != int64(1) {
		t.Fatalf("__len__: %s %#v", kind, v)
	}
	// The reader's thread now waits for its next request.

	writer := dialPy(t, m)
	writer.call(nil, "accept_connection", "writer")
	b, _ := pickle.Encode(ogórek.Tuple{ident, "__getitem__", ogórek.Tuple{"big"}, ogórek.NewDict()}, pickle.Options{})
	writer.send(b)
	// An 8 MiB reply does not fit in the socket's buffer: once the
	// server has taken the request, its thread is blocked writing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, err := unix.IoctlGetInt(fdOf(t, writer.c), unix.SIOCINQ); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no part of the reply arrived")
		}
		time.Sleep(time.Millisecond)
	}

	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return: a Python connection's thread is still blocked")
	}
	if _, err := reader.c.RecvBytes(0); err == nil {
		t.Fatal("the reader's connection was not closed")
	}
}

// fdOf returns c's socket descriptor.
func fdOf(t *testing.T, c *mp.Conn) int {
	t.Helper()
	fd, err := c.Fileno()
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestPythonLongRequests: long requests (past the server's first read
// buffer, and past the 16 KiB beyond which CPython's client writes the
// header and the pickle apart) arrive whole, and one longer than MaxMessage is read,
// thrown away and answered with a traceback, the connection staying in
// step for the next.
func TestPythonLongRequests(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true, MaxMessage: 1 << 20}, "unix")
	if _, err := NewDict[string, string](ctx, m, Named("d")); err != nil {
		t.Fatal(err)
	}
	_, v := dialPy(t, m).call(nil, "create", "get_d")
	ident := v.(ogórek.Tuple)[0].(string)
	p := dialPy(t, m)
	p.call(nil, "accept_connection", "long")
	for _, n := range []int{4<<10 - 100, 64<<10 + 1, 200 << 10, 900 << 10} {
		val := strings.Repeat("y", n)
		if kind, v := p.call(ident, "__setitem__", "k", val); kind != "#RETURN" || v != nil {
			t.Fatalf("__setitem__ of %d bytes: %s %#v", n, kind, v)
		}
		if kind, v := p.call(ident, "__getitem__", "k"); kind != "#RETURN" || v != val {
			t.Fatalf("__getitem__ of %d bytes: %s, a %T", n, kind, v)
		}
	}
	kind, v := p.call(ident, "__setitem__", "k", strings.Repeat("z", 2<<20))
	if s, _ := v.(string); kind != "#TRACEBACK" || !strings.Contains(s, "longer than the limit") {
		t.Fatalf("a 2 MiB request: %s %.200v", kind, v)
	}
	if kind, v := p.call(ident, "__len__"); kind != "#RETURN" || v != int64(1) {
		t.Fatalf("__len__ after: %s %#v", kind, v)
	}
}

// pyNamedIdent returns the ident of the object named name, as get_NAME gives it
// to a Python client.
func pyNamedIdent(t *testing.T, m *Manager, name string) string {
	t.Helper()
	kind, v := dialPy(t, m).call(nil, "create", "get_"+name)
	if kind != "#RETURN" {
		t.Fatalf("get_%s: %s %#v", name, kind, v)
	}
	return v.(ogórek.Tuple)[0].(string)
}

// proxyConn returns the connection of a played proxy thread.
func proxyConn(t *testing.T, m *Manager) *pyConn {
	t.Helper()
	p := dialPy(t, m)
	if kind, v := p.call(nil, "accept_connection", "hostile"); kind != "#RETURN" {
		t.Fatalf("accept_connection: %s %#v", kind, v)
	}
	return p
}

// recvWithin returns the next reply, failing the test if none comes
// within d (a bound that only proves the server did not hang).
func (p *pyConn) recvWithin(d time.Duration, what string) (string, any) {
	p.t.Helper()
	if ok, err := p.c.Poll(d); err != nil || !ok {
		p.t.Fatalf("%s: no reply within %v (%v)", what, d, err)
	}
	return p.recv()
}

// TestPythonPanicUnderLockFreesTheObject: a Python request that panics
// while it holds its object's lock (made to, through a test hook: no
// such panic is known) ends its own connection and leaves the object
// unlocked: a Go client and another Python connection using the same
// object are served (within a bound that only proves they are not left
// waiting for ever), and so is the same request once the hook is gone.
func TestPythonPanicUnderLockFreesTheObject(t *testing.T) {
	ctx := hostileCtx(t)
	logs := logtest.New()
	s := &Server{Python: true, Logger: logs.Logger()}
	m := serveHere(t, s, "unix")
	ns, err := NewNamespace(ctx, m, Named("ns"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Set(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	l, err := NewList(ctx, m, []int{4, 5, 6}, Named("l"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testHookPyLocked.Store(nil) })
	const bound = 10 * time.Second
	for _, c := range []struct {
		obj, method string
		args        []any
		want        any                                // the reply once the hook is gone
		goUse       func(context.Context) (any, error) // a Go client's use of the object
		goWant      any
	}{
		{"ns", "__repr__", nil, "Namespace(x=1)", func(ctx context.Context) (any, error) {
			var v int
			err := ns.Get(ctx, "x", &v)
			return v, err
		}, 1},
		{"l", "index", []any{int64(5), int64(0), int64(3)}, int64(1), func(ctx context.Context) (any, error) {
			return l.Get(ctx, 1)
		}, 5},
	} {
		ident := pyNamedIdent(t, m, c.obj)
		hook := func(name string) {
			if name == c.method {
				panic("boom under the lock in " + name)
			}
		}
		testHookPyLocked.Store(&hook)
		p := proxyConn(t, m)
		b, err := pickle.Encode(ogórek.Tuple{ident, c.method, ogórek.Tuple(c.args), ogórek.NewDict()}, pickle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p.send(b)
		if ok, err := p.c.Poll(bound); err != nil || !ok {
			t.Fatalf("%s.%s: the connection neither answered nor ended within %v (%v)", c.obj, c.method, bound, err)
		}
		if b, err := p.c.RecvBytes(0); err == nil {
			t.Fatalf("%s.%s: a reply %q, want the connection ended", c.obj, c.method, b)
		}
		if !strings.Contains(logs.Text(), "boom under the lock in "+c.method) {
			t.Fatalf("%s.%s: the panic is not logged:\n%s", c.obj, c.method, logs.Text())
		}
		testHookPyLocked.Store(nil)
		// The object is not left locked: a Go client's use of it, and
		// another Python connection's, are served.
		gctx, cancel := context.WithTimeout(ctx, bound)
		v, err := c.goUse(gctx)
		cancel()
		if err != nil || v != c.goWant {
			unlockLeft(s, ident)
			t.Fatalf("%s: a Go client after the panic in %s: %v, %v (want %v: the object stayed locked?)", c.obj, c.method, v, err, c.goWant)
		}
		q := proxyConn(t, m)
		b, err = pickle.Encode(ogórek.Tuple{ident, c.method, ogórek.Tuple(c.args), ogórek.NewDict()}, pickle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		q.send(b)
		if kind, v := q.recvWithin(bound, c.obj+"."+c.method+" from another Python connection"); kind != "#RETURN" || v != c.want {
			t.Fatalf("%s.%s from another Python connection: %s %#v, want %#v", c.obj, c.method, kind, v, c.want)
		}
	}
}

// unlockLeft unlocks the mutex of the Namespace or list ident if it is
// locked: left locked, it would hold the server's Shutdown at the end of
// the test for ever (behind the Go client's request waiting on it), and a
// failure of TestPythonPanicUnderLockFreesTheObject would show only as
// the test binary's timeout, its message lost.
func unlockLeft(s *Server, ident string) {
	id, _ := pyIdent(ident)
	var mu *sync.Mutex
	switch im := s.lookup(id).impl.(type) {
	case *nsObj:
		mu = &im.mu
	case *listObj:
		mu = &im.mu
	default:
		return
	}
	mu.TryLock()
	mu.Unlock()
}

// TestPythonSemaphoreReleaseN: a semaphore's release(n) is one
// operation, whatever n: all n units or none (ValueError, the value
// unchanged), at once, waiters served first.
func TestPythonSemaphoreReleaseN(t *testing.T) {
	ctx := hostileCtx(t)
	srv := &Server{Python: true}
	m := serveHere(t, srv, "unix")
	s, err := NewSemaphore(ctx, m, 0, Named("S"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBoundedSemaphore(ctx, m, 3, Named("B"))
	if err != nil {
		t.Fatal(err)
	}
	sid, bid := pyNamedIdent(t, m, "S"), pyNamedIdent(t, m, "B")
	value := func(what string, sem interface {
		Value(context.Context) (int, error)
	}, want int) {
		t.Helper()
		if v, err := sem.Value(ctx); err != nil || v != want {
			t.Fatalf("%s: value %d, %v; want %d", what, v, err, want)
		}
	}

	p := proxyConn(t, m)
	// Past MaxSemaphoreValue: refused at once, nothing released (it used
	// to release unit by unit, 2^31 of them, before it failed).
	p.send(mustEncode(t, ogórek.Tuple{sid, "release", ogórek.Tuple{int64(1) << 40}, ogórek.NewDict()}))
	kind, v := p.recvWithin(10*time.Second, "release(2**40)")
	wantExc(t, kind, v, excValueError)
	value("the Semaphore after release(2**40)", s, 0)
	kind, v = p.call(sid, "release", new(big.Int).Lsh(big.NewInt(1), 70))
	if c, _ := v.(ogórek.Call); kind != "#ERROR" || len(c.Args) != 1 || c.Args[0] != "Semaphore released too many times" {
		t.Fatalf("release(2**70): %s %#v", kind, v)
	}

	// A BoundedSemaphore at 2 of 3: release(2) would pass the bound.
	if kind, v := p.call(bid, "acquire"); kind != "#RETURN" || v != true {
		t.Fatalf("acquire: %s %#v", kind, v)
	}
	kind, v = p.call(bid, "release", int64(2))
	wantExc(t, kind, v, excValueError)
	value("the BoundedSemaphore after a refused release(2)", b, 2)
	if kind, v := p.call(bid, "release", int64(1)); kind != "#RETURN" || v != nil {
		t.Fatalf("release(1): %s %#v", kind, v)
	}
	value("the BoundedSemaphore after release(1)", b, 3)

	// Two waiters, then release(3): both get a unit, one is left.
	var waiters []*pyConn
	for range 2 {
		w := proxyConn(t, m)
		w.send(mustEncode(t, ogórek.Tuple{sid, "acquire", ogórek.Tuple{}, ogórek.NewDict()}))
		waiters = append(waiters, w)
	}
	waitFor(t, func() bool { return srv.waiting.Load() == 2 }, func() string { return "two acquires waiting" })
	if kind, v := p.call(sid, "release", int64(3)); kind != "#RETURN" || v != nil {
		t.Fatalf("release(3): %s %#v", kind, v)
	}
	for i, w := range waiters {
		if kind, v := w.recvWithin(10*time.Second, "a waiter's acquire"); kind != "#RETURN" || v != true {
			t.Fatalf("waiter %d: %s %#v", i, kind, v)
		}
	}
	value("the Semaphore after release(3) to two waiters", s, 1)
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := pickle.Encode(v, pickle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPythonDebugInfoHidesIdents: an object's id is what lets a client
// use it (ids are drawn at random, see newID), so debug_info, which any
// client may call, lists the objects without their ids: it used to list
// them, and a client could then read, change or decref any object of the
// server, a Go client's unnamed dict among them.
func TestPythonDebugInfoHidesIdents(t *testing.T) {
	ctx := hostileCtx(t)
	srv := &Server{Python: true}
	m := serveHere(t, srv, "unix")
	d, err := NewDict[string, string](ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "secret", "s3cr3t"); err != nil {
		t.Fatal(err)
	}
	if kind, _ := dialPy(t, m).call(nil, "create", "list"); kind != "#RETURN" {
		t.Fatal(kind)
	}
	kind, v := dialPy(t, m).call(nil, "debug_info")
	info, _ := v.(string)
	if kind != "#RETURN" || !strings.Contains(info, "<dict>") || !strings.Contains(info, "<list>") {
		t.Fatalf("debug_info: %s %#v", kind, v)
	}
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	for id := range srv.objects {
		if strings.Contains(info, pyIdentOf(id)) {
			t.Fatalf("debug_info names object %s:\n%s", pyIdentOf(id), info)
		}
	}
}

// TestPythonListRepeatBounds: a list's __mul__, __rmul__ and __imul__
// with counts whose product with the length overflows int64, or on an
// empty list, answer at once (MemoryError, as CPython, or the empty
// list) and leave
// the list as it was. The product used to wrap: [1, 2] * 2**62 made a
// slice of negative capacity (a panic that took the server down), and
// [] * 2**62 looped 2^62 times, __imul__ holding the list's lock.
func TestPythonListRepeatBounds(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	full, err := NewList[int](ctx, m, []int{1, 2}, Named("full"))
	if err != nil {
		t.Fatal(err)
	}
	empty, err := NewList[int](ctx, m, nil, Named("empty"))
	if err != nil {
		t.Fatal(err)
	}
	fid, eid := pyNamedIdent(t, m, "full"), pyNamedIdent(t, m, "empty")
	p := proxyConn(t, m)
	for _, method := range []string{"__mul__", "__rmul__", "__imul__"} {
		p.send(mustEncode(t, ogórek.Tuple{fid, method, ogórek.Tuple{int64(1) << 62}, ogórek.NewDict()}))
		kind, v := p.recvWithin(10*time.Second, "[1, 2]."+method+"(2**62)")
		wantExc(t, kind, v, excMemoryError)
		p.send(mustEncode(t, ogórek.Tuple{eid, method, ogórek.Tuple{int64(1) << 62}, ogórek.NewDict()}))
		kind, v = p.recvWithin(10*time.Second, "[]."+method+"(2**62)")
		if l, ok := v.([]any); kind != "#RETURN" || (method != "__imul__" && (!ok || len(l) != 0)) {
			t.Fatalf("[].%s(2**62): %s %#v", method, kind, v)
		}
	}
	if got, err := full.All(ctx); err != nil || len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("the list after refused repeats: %v, %v", got, err)
	}
	if n, err := empty.Len(ctx); err != nil || n != 0 {
		t.Fatalf("the empty list after repeats: %d, %v", n, err)
	}
	// Repeats within bounds still work.
	if kind, v := p.call(fid, "__imul__", int64(3)); kind != "#RETURN" {
		t.Fatalf("__imul__(3): %s %#v", kind, v)
	}
	if got, err := full.All(ctx); err != nil || len(got) != 6 {
		t.Fatalf("the list after *= 3: %v, %v", got, err)
	}
}

// TestPythonSliceStepsAtTheEnds: slices whose steps are at the ends of
// int64 select what Python selects. A step near 2^63 used to overflow
// the index past the list's end to a negative one: an index-out-of-range
// panic that took the server down.
func TestPythonSliceStepsAtTheEnds(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	if _, err := NewList[int](ctx, m, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Named("l")); err != nil {
		t.Fatal(err)
	}
	id := pyNamedIdent(t, m, "l")
	p := proxyConn(t, m)
	slice := func(lo, hi, step any) ogórek.Call {
		return ogórek.Call{Callable: pySliceClass, Args: ogórek.Tuple{lo, hi, step}}
	}
	for _, c := range []struct {
		s    ogórek.Call
		want []int64
	}{
		{slice(int64(1), nil, int64(math.MaxInt64)), []int64{1}},
		{slice(int64(math.MinInt64), int64(math.MaxInt64), int64(math.MaxInt64)), []int64{0}},
		{slice(int64(9), nil, int64(math.MaxInt64-5)), []int64{9}},
		{slice(nil, nil, int64(math.MinInt64)), []int64{9}},
		{slice(int64(math.MaxInt64), int64(math.MinInt64), int64(math.MinInt64)), []int64{9}},
	} {
		kind, v := p.call(id, "__getitem__", c.s)
		got, _ := v.([]any)
		ok := kind == "#RETURN" && len(got) == len(c.want)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i] == c.want[i]
		}
		if !ok {
			t.Fatalf("l[%v]: %s %#v, want %v", c.s.Args, kind, v, c.want)
		}
	}
}

// TestPythonNamespaceSpecialNames: a Namespace's __class__ and __dict__
// are not fields: setting or deleting them raises TypeError, as on a
// CPython server, and leaves the fields as they were (they used to be
// stored as fields of those names).
func TestPythonNamespaceSpecialNames(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	ns, err := NewNamespace(ctx, m, Named("ns"))
	if err != nil {
		t.Fatal(err)
	}
	id := pyNamedIdent(t, m, "ns")
	p := proxyConn(t, m)
	if kind, v := p.call(id, "__setattr__", "x", int64(1)); kind != "#RETURN" {
		t.Fatalf("setattr x: %s %#v", kind, v)
	}
	for _, name := range []string{"__class__", "__dict__"} {
		kind, v := p.call(id, "__setattr__", name, int64(5))
		wantExc(t, kind, v, excTypeError)
		kind, v = p.call(id, "__delattr__", name)
		wantExc(t, kind, v, excTypeError)
	}
	names, err := ns.Fields(ctx)
	if err != nil || len(names) != 1 || names[0] != "x" {
		t.Fatalf("the Namespace's fields: %v, %v", names, err)
	}
}

// TestPythonCreateWithBogusKeywords: keyword arguments whose names are
// not strs (a pickled request may carry any dict) are refused with
// TypeError by every typeid. Namespace took them as field names
// unchecked: the failed type assertion was a panic that took the server
// down.
func TestPythonCreateWithBogusKeywords(t *testing.T) {
	m := serveHere(t, &Server{Python: true}, "unix")
	for typeid := range pyKinds {
		kw := ogórek.NewDict()
		kw.Set(int64(5), int64(1))
		p := dialPy(t, m)
		p.send(mustEncode(t, ogórek.Tuple{nil, "create", ogórek.Tuple{typeid}, kw}))
		kind, v := p.recvWithin(10*time.Second, "create "+typeid+" with a keyword 5")
		wantExc(t, kind, v, excTypeError)
	}
	if kind, v := dialPy(t, m).call(nil, "create", "dict"); kind != "#RETURN" {
		t.Fatalf("create dict after: %s %#v", kind, v)
	}
}

// TestPythonRequestsByteByByte: requests that arrive a byte at a time,
// with pauses, are read whole (on the connection's first message, read
// through the Conn, and on a proxy thread's socket, read by pySock), and
// meanwhile another client is served.
func TestPythonRequestsByteByByte(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	d, err := NewDict[string, int](ctx, m, Named("d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "k", 7); err != nil {
		t.Fatal(err)
	}
	id := pyNamedIdent(t, m, "d")
	trickle := func(p *pyConn, req any) {
		b := mustEncode(t, req)
		raw := append([]byte{byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
		fd := fdOf(t, p.c)
		for i, c := range raw {
			if _, err := unix.Write(fd, []byte{c}); err != nil {
				t.Fatal(err)
			}
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
				// Another client is served while the request trickles.
				if n, err := d.Len(ctx); err != nil || n != 1 {
					t.Fatalf("the other client, meanwhile: %d, %v", n, err)
				}
			}
		}
	}
	p := dialPy(t, m)
	trickle(p, ogórek.Tuple{nil, "accept_connection", ogórek.Tuple{"trickle"}, ogórek.NewDict()})
	if kind, v := p.recvWithin(10*time.Second, "accept_connection"); kind != "#RETURN" {
		t.Fatalf("accept_connection: %s %#v", kind, v)
	}
	for range 2 { // the second on the socket of the proxy thread
		trickle(p, ogórek.Tuple{id, "__getitem__", ogórek.Tuple{"k"}, ogórek.NewDict()})
		if kind, v := p.recvWithin(10*time.Second, "__getitem__"); kind != "#RETURN" || v != int64(7) {
			t.Fatalf("__getitem__: %s %#v", kind, v)
		}
	}
}

// TestPythonCreateOutOfRange: counts out of range raise ValueError, as
// CPython's Semaphore and Barrier (3.13) do, and counts that are not ints
// TypeError: a program that catches ValueError around m.Semaphore(n)
// used to get a TypeError.
func TestPythonCreateOutOfRange(t *testing.T) {
	m := serveHere(t, &Server{Python: true}, "unix")
	huge := new(big.Int).Lsh(big.NewInt(1), 70)
	for _, c := range []struct {
		typeid string
		arg    any
		exc    ogórek.Class
	}{
		{"Semaphore", int64(-1), excValueError},
		{"BoundedSemaphore", int64(1) << 40, excValueError},
		{"Semaphore", huge, excValueError},
		{"Semaphore", "x", excTypeError},
		{"Barrier", int64(0), excValueError},
		{"Barrier", int64(-5), excValueError},
		{"Barrier", huge, excValueError},
		{"Barrier", 2.5, excTypeError},
	} {
		kind, v := dialPy(t, m).call(nil, "create", c.typeid, c.arg)
		wantExc(t, kind, v, c.exc)
	}
}

// TestPythonQueueHugeMaxsize: a Queue's maxsize beyond int64 is a
// bound no queue reaches (or none, below zero), as in CPython, where it
// raised TypeError "maxsize is an int, not int".
func TestPythonQueueHugeMaxsize(t *testing.T) {
	m := serveHere(t, &Server{Python: true}, "unix")
	huge := new(big.Int).Lsh(big.NewInt(1), 70)
	for _, n := range []*big.Int{huge, new(big.Int).Neg(huge)} {
		kind, v := dialPy(t, m).call(nil, "create", "Queue", n)
		if kind != "#RETURN" {
			t.Fatalf("Queue(%v): %s %#v", n, kind, v)
		}
		id := v.(ogórek.Tuple)[0].(string)
		p := proxyConn(t, m)
		if kind, v := p.call(id, "put_nowait", int64(1)); kind != "#RETURN" {
			t.Fatalf("put_nowait on Queue(%v): %s %#v", n, kind, v)
		}
		if kind, v := p.call(id, "full"); kind != "#RETURN" || v != false {
			t.Fatalf("full() of Queue(%v): %s %#v", n, kind, v)
		}
	}
}

// TestPythonSliceBoundsBeyondInt64: slice bounds and steps, and the
// start and stop of a list's index, that are ints beyond int64 are taken
// as the ends of int64, as CPython clamps them (its server answers
// l[0:2**70]); they used to raise TypeError.
func TestPythonSliceBoundsBeyondInt64(t *testing.T) {
	ctx := hostileCtx(t)
	m := serveHere(t, &Server{Python: true}, "unix")
	if _, err := NewList[int](ctx, m, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Named("l")); err != nil {
		t.Fatal(err)
	}
	id := pyNamedIdent(t, m, "l")
	p := proxyConn(t, m)
	huge := new(big.Int).Lsh(big.NewInt(1), 70)
	neg := new(big.Int).Neg(huge)
	slice := func(lo, hi, step any) ogórek.Call {
		return ogórek.Call{Callable: pySliceClass, Args: ogórek.Tuple{lo, hi, step}}
	}
	for _, c := range []struct {
		s    ogórek.Call
		want []int64
	}{
		{slice(int64(7), huge, nil), []int64{7, 8, 9}},
		{slice(neg, int64(2), nil), []int64{0, 1}},
		{slice(huge, neg, int64(-4)), []int64{9, 5, 1}},
		{slice(nil, nil, huge), []int64{0}},
		{slice(nil, nil, neg), []int64{9}},
	} {
		kind, v := p.call(id, "__getitem__", c.s)
		got, _ := v.([]any)
		ok := kind == "#RETURN" && len(got) == len(c.want)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i] == c.want[i]
		}
		if !ok {
			t.Fatalf("l[%v]: %s %#v, want %v", c.s.Args, kind, v, c.want)
		}
	}
	if kind, v := p.call(id, "index", int64(5), neg, huge); kind != "#RETURN" || v != int64(5) {
		t.Fatalf("l.index(5, -2**70, 2**70): %s %#v, want 5", kind, v)
	}
}

// TestPythonPanicEndsOnlyItsConnection: a Python request that panics in
// the server (made to here, through a test hook: none is known) ends
// only its own connection, whether a proxy's or a public function's: the
// server logs the panic with its stack and goes on serving its other
// clients, the same object included.
func TestPythonPanicEndsOnlyItsConnection(t *testing.T) {
	ctx := hostileCtx(t)
	logs := logtest.New()
	s := &Server{Python: true, Logger: logs.Logger()}
	m := serveHere(t, s, "unix")
	d, err := NewDict[string, int](ctx, m, Named("d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	ident := pyNamedIdent(t, m, "d")
	hook := func(name string) {
		if name == "__len__" || name == "number_of_objects" {
			panic("boom in " + name)
		}
	}
	testHookPyRequest.Store(&hook)
	t.Cleanup(func() { testHookPyRequest.Store(nil) })
	for _, c := range []struct {
		p    *pyConn
		id   any
		name string
	}{{proxyConn(t, m), ident, "__len__"}, {dialPy(t, m), nil, "number_of_objects"}} {
		b, err := pickle.Encode(ogórek.Tuple{c.id, c.name, ogórek.Tuple{}, ogórek.NewDict()}, pickle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c.p.send(b)
		if ok, err := c.p.c.Poll(10 * time.Second); err != nil || !ok {
			t.Fatalf("%s: the connection neither answered nor ended within 10 s (%v)", c.name, err)
		}
		if b, err := c.p.c.RecvBytes(0); err == nil {
			t.Fatalf("%s: a reply %q, want the connection ended", c.name, b)
		}
		logged := false
		for _, r := range logs.Records() {
			if r.Level == slog.LevelError && r.Str("method") == c.name &&
				r.Str("panic") == "boom in "+c.name && strings.Contains(r.Str("stack"), "guard") {
				logged = true
			}
		}
		if !logged {
			t.Fatalf("%s: the panic is not logged with its stack:\n%s", c.name, logs.Text())
		}
	}
	// The server serves on: another Python client, and the Go client.
	if kind, v := proxyConn(t, m).call(ident, "__getitem__", "a"); kind != "#RETURN" || v != int64(1) {
		t.Fatalf("__getitem__ after the panics: %s %#v", kind, v)
	}
	if v, ok, err := d.Get(ctx, "a"); err != nil || !ok || v != 1 {
		t.Fatalf("Go client after the panics: %v, %v", v, err)
	}
}

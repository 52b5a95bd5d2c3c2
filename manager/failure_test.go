//go:build linux

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/manager"
	"golang.org/x/sys/unix"
)

// TestServerKilled kills the server while clients wait in a Queue's Get and
// a Lock's Acquire: they return ErrManagerGone (and io.EOF) at once, and so
// does every later call.
func TestServerKilled(t *testing.T) {
	ctx := testCtx(t)
	m, err := manager.Start(ctx, nil)
	check(t, err)
	defer m.Close()
	q := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0))
	l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
	check(t, l.Acquire(ctx))
	errs := make(chan error, 2)
	go func() { _, err := q.Get(ctx); errs <- err }()
	go func() { errs <- l.Acquire(ctx) }()
	waitFor(t, func() bool { return serverWaiters(t, m) == 2 })
	killed := time.Now()
	check(t, m.Process().Kill())
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, manager.ErrManagerGone) || !errors.Is(err, io.EOF) {
				t.Errorf("blocked call: %v, want ErrManagerGone and io.EOF", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked call did not return after the server was killed")
		}
	}
	t.Logf("blocked calls returned %v after the kill", time.Since(killed))
	for _, call := range []func() error{
		func() error { return q.Put(ctx, 1) },
		func() error { _, err := l.TryAcquire(ctx); return err },
		func() error { _, err := manager.NewDict[int, int](ctx, m); return err },
	} {
		if err := call(); !errors.Is(err, manager.ErrManagerGone) {
			t.Errorf("call after the kill: %v, want ErrManagerGone", err)
		}
	}
	check(t, m.Close())
	if err := q.Put(ctx, 1); !errors.Is(err, mp.ErrClosed) {
		t.Errorf("call after Close: %v, want mp.ErrClosed", err)
	}
}

type holdArgs struct {
	Lock  *manager.Lock
	RLock *manager.RLock
	Sem   *manager.BoundedSemaphore
	Ready *manager.Event
}

// holdAndHang takes the locks and a unit, tells the parent, and waits to
// be killed.
var holdAndHang = mp.RegisterProc("manager_test.holdAndHang", func(a holdArgs) error {
	ctx := context.Background()
	if err := a.Lock.Acquire(ctx); err != nil {
		return err
	}
	if err := a.RLock.Acquire(ctx); err != nil {
		return err
	}
	if err := a.RLock.Acquire(ctx); err != nil {
		return err
	}
	if err := a.Sem.Acquire(ctx); err != nil {
		return err
	}
	if err := a.Sem.Acquire(ctx); err != nil {
		return err
	}
	if err := a.Ready.Set(ctx); err != nil {
		return err
	}
	time.Sleep(time.Minute)
	return nil
})

// TestClientKilledReleases kills a child holding a Lock, an RLock (twice)
// and two units of a BoundedSemaphore: the server gives them back, and the
// lock's next acquirer is told.
func TestClientKilledReleases(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	a := holdArgs{
		Lock:  must[*manager.Lock](t)(manager.NewLock(ctx, m)),
		RLock: must[*manager.RLock](t)(manager.NewRLock(ctx, m)),
		Sem:   must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 3)),
		Ready: must[*manager.Event](t)(manager.NewEvent(ctx, m)),
	}
	p := mp.NewProcess(holdAndHang, a)
	check(t, p.Start())
	defer p.Join(ctx)
	defer p.Kill()
	check(t, a.Ready.Wait(ctx))
	equal(t, "semaphore value while held", must[int](t)(a.Sem.Value(ctx)), 1)
	// A waiter in Acquire when the holder dies gets the lock.
	got := make(chan error, 1)
	go func() { got <- a.Lock.Acquire(ctx) }()
	waitFor(t, func() bool { return serverWaiters(t, m) == 1 })

	check(t, p.Kill())
	killed := time.Now()
	within, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	select {
	case err := <-got:
		var od *mp.OwnerDiedError
		if !errors.As(err, &od) || od.Pid != p.Pid() {
			t.Errorf("Acquire after the holder died: %v, want an OwnerDiedError for %d", err, p.Pid())
		}
	case <-within.Done():
		t.Fatal("the dead child's Lock was not released within 2s")
	}
	t.Logf("lock taken over %v after the kill", time.Since(killed))
	check(t, a.Lock.Release(ctx))
	err := a.RLock.Acquire(within)
	if !errors.Is(err, mp.ErrOwnerDied) {
		t.Errorf("RLock Acquire after the holder died: %v", err)
	}
	held, depth, err := a.RLock.Held(ctx)
	check(t, err)
	equal(t, "RLock held at depth", [2]any{held, depth}, [2]any{true, 1})
	check(t, a.RLock.Release(ctx))
	equal(t, "semaphore value after the death", must[int](t)(a.Sem.Value(ctx)), 3)
	p.Join(ctx)
}

// waitForever blocks in a Get and an Acquire until killed.
var waitForever = mp.RegisterProc("manager_test.waitForever", func(a holdArgs) error {
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.Lock.Acquire(ctx)
	}()
	go func() {
		defer wg.Done()
		a.Sem.Acquire(ctx)
	}()
	a.Ready.Set(ctx)
	wg.Wait()
	return nil
})

// TestClientKilledWhileWaiting kills a child blocked in the server: the
// server forgets its waits, so they take nothing from the others.
func TestClientKilledWhileWaiting(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	a := holdArgs{
		Lock:  must[*manager.Lock](t)(manager.NewLock(ctx, m)),
		Sem:   must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 1)),
		Ready: must[*manager.Event](t)(manager.NewEvent(ctx, m)),
	}
	check(t, a.Lock.Acquire(ctx))
	check(t, a.Sem.Acquire(ctx))
	p := mp.NewProcess(waitForever, a)
	check(t, p.Start())
	defer p.Join(ctx)
	defer p.Kill()
	check(t, a.Ready.Wait(ctx))
	waitFor(t, func() bool { return serverWaiters(t, m) == 2 })
	check(t, p.Kill())
	p.Join(ctx)
	waitFor(t, func() bool { return serverWaiters(t, m) == 0 })
	// Released now, the lock and the unit are free for this process.
	check(t, a.Lock.Release(ctx))
	equal(t, "TryAcquire", must[bool](t)(a.Lock.TryAcquire(ctx)), true)
	check(t, a.Sem.Release(ctx))
	equal(t, "semaphore value", must[int](t)(a.Sem.Value(ctx)), 1)
}

// TestManyClients serves 100 client processes' worth of sessions at once,
// each on its own connection, doing Dict operations concurrently.
func TestManyClients(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	d := must[*manager.Dict[int, int]](t)(manager.NewDict[int, int](ctx, m, manager.Named("shared")))
	const clients, ops = 100, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := manager.Connect(ctx, m.Network(), m.Address(), nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			cd, err := manager.NewDict[int, int](ctx, c, manager.Named("shared"))
			if err != nil {
				errs <- err
				return
			}
			for j := range ops {
				if err := cd.Set(ctx, i*ops+j, j); err != nil {
					errs <- err
					return
				}
				if v, ok, err := cd.Get(ctx, i*ops+j); err != nil || !ok || v != j {
					errs <- fmt.Errorf("Get: %v %v %v", v, ok, err)
					return
				}
			}
		}()
	}
	// Meanwhile, this process's proxies keep working.
	for range 50 {
		must[int](t)(d.Len(ctx))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	equal(t, "Len", must[int](t)(d.Len(ctx)), clients*ops)
	waitFor(t, func() bool { st, _ := m.Stats(ctx); return st.Clients == 1 })
}

// TestConcurrentProxyUse shares one Manager between many goroutines.
func TestConcurrentProxyUse(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	v := must[*manager.Value[int]](t)(manager.NewValue(ctx, m, 0))
	l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := l.Acquire(ctx); err != nil {
					t.Error(err)
					return
				}
				n, err := v.Get(ctx)
				if err == nil {
					err = v.Set(ctx, n+1)
				}
				if err == nil {
					err = l.Release(ctx)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	equal(t, "value", must[int](t)(v.Get(ctx)), 400)
	if n := manager.OpenConns(m); n > 16 {
		t.Errorf("%d connections left open, at most 16 idle expected", n)
	}
}

// TestBadInput sends the server what a confused or hostile client might:
// a wrong key, garbage before and after the hello, requests for objects
// that do not exist or of the wrong kind. The server keeps serving.
func TestBadInput(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
	check(t, d.Set(ctx, "k", 1))
	alive := func() {
		t.Helper()
		v, ok, err := d.Get(ctx, "k")
		if err != nil || !ok || v != 1 {
			t.Fatalf("server no longer serves: %v %v %v", v, ok, err)
		}
	}

	if _, err := manager.Connect(ctx, m.Network(), m.Address(), []byte("wrong key")); !errors.Is(err, mp.ErrAuthentication) {
		t.Errorf("Connect with a wrong key: %v", err)
	}
	alive()

	// Authenticated garbage: the server hangs up on that connection only.
	rng := rand.New(rand.NewPCG(1, 2))
	hello := manager.Hello
	msgs := [][]byte{
		{},
		{0xff},
		{0x9f},                   // indefinite array
		{0x82, 0x01},             // truncated
		{0x81, 0x01},             // too short
		{0x83, 0x08, 0x01, 0xa1}, // truncated map
		{0x82, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00},
		[]byte("\x82\x07\x00GET / HTTP/1.1"),
	}
	for range 30 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		msgs = append(msgs, b)
	}
	for i, msg := range msgs {
		for _, withHello := range []bool{false, true} {
			c, err := connection.Dial(ctx, m.Network(), m.Address(), nil)
			check(t, err)
			if withHello {
				check(t, c.SendBytes(hello))
				if _, err := c.RecvBytes(0); err != nil {
					t.Fatalf("hello: %v", err)
				}
			}
			c.SendBytes(msg)
			// The reply is an error, or the server hangs up.
			if b, err := c.RecvBytes(0); err == nil && len(b) > 1 && b[1] == 0 {
				t.Errorf("message %d (%x) succeeded: %x", i, msg, b)
			}
			c.Close()
		}
	}
	alive()

	// Well-formed requests that make no sense.
	c, err := connection.Dial(ctx, m.Network(), m.Address(), nil)
	check(t, err)
	defer c.Close()
	check(t, c.SendBytes(hello))
	_, err = c.RecvBytes(0)
	check(t, err)
	for _, req := range [][]byte{
		{0x82, 0x07, 0x18, 200},                                 // Dict Get on no object
		{0x82, 0x18, 0x7f, 0x01},                                // an unknown operation
		{0x84, 0x02, 0x00, 0x64, 'n', 'o', 'p', 'e', 0xf6},      // create an unknown kind
		{0x84, 0x02, 0x00, 0x65, 'q', 'u', 'e', 'u', 'e', 0xf6}, // a queue without maxsize
		{0x83, 0x05, 0x00, 0x61, 'x'},                           // call on nothing
		{0x82, 0x0a, 0x01},                                      // Dict Len on object 1 (the dict)
	} {
		if err := c.SendBytes(req); err != nil {
			t.Fatalf("request %x: %v", req, err)
		}
		b, err := c.RecvBytes(0)
		if err != nil {
			t.Fatalf("request %x: the server hung up: %v", req, err)
		}
		t.Logf("%x -> %x", req, b)
	}
	alive()
}

// TestServeInProcess runs a Server in this process, on TCP, and stops it
// with its ctx.
func TestServeInProcess(t *testing.T) {
	ctx := testCtx(t)
	key := []byte("in-process key")
	l, err := connection.Listen("tcp", "127.0.0.1:0", key)
	check(t, err)
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- manager.Serve(sctx, l) }()

	m, err := manager.Connect(ctx, "tcp", l.Addr().String(), key)
	check(t, err)
	defer m.Close()
	q := must[*manager.Queue[string]](t)(manager.NewQueue[string](ctx, m, 0))
	check(t, q.Put(ctx, "hello"))
	equal(t, "Get", must[string](t)(q.Get(ctx)), "hello")
	// Connect'ed managers do not stop the server.
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown of a connected manager: %v", err)
	}
	m2, err := manager.Connect(ctx, "tcp", l.Addr().String(), key)
	check(t, err)
	defer m2.Close()
	q2 := must[*manager.Queue[string]](t)(manager.NewQueue[string](ctx, m2, 0))
	blocked := make(chan error, 1)
	go func() { _, err := q2.Get(ctx); blocked <- err }()
	waitFor(t, func() bool { st, _ := m2.Stats(ctx); return st.Waiting == 1 })
	stop()
	check(t, <-served)
	if err := <-blocked; !errors.Is(err, manager.ErrManagerGone) {
		t.Errorf("Get when the server stopped: %v", err)
	}
}

func TestStartAndConnectErrors(t *testing.T) {
	ctx := testCtx(t)
	// Off loopback, a server needs an explicit key.
	if m, err := manager.Start(ctx, &manager.Options{Network: "tcp", Address: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "authkey") {
		t.Errorf("Start off loopback without a key: %v", err)
		if m != nil {
			m.Close()
		}
	}
	if _, err := manager.Start(ctx, &manager.Options{Network: "udp"}); err == nil {
		t.Error("Start on udp worked")
	}
	// An address in use.
	l, err := connection.Listen("tcp", "127.0.0.1:0", nil)
	check(t, err)
	defer l.Close()
	if _, err := manager.Start(ctx, &manager.Options{Network: "tcp", Address: l.Addr().String()}); err == nil {
		t.Error("Start on an address in use worked")
	}
	// Nobody there.
	if _, err := manager.Connect(ctx, "unix", t.TempDir()+"/nothing", nil); !errors.Is(err, manager.ErrManagerGone) {
		t.Errorf("Connect to nothing: %v", err)
	}
	if _, err := manager.Connect(ctx, "unix", "/x", []byte{}); err == nil {
		t.Error("Connect with an empty key worked")
	}
	// A ctx that ends during Start.
	short, cancel := context.WithTimeout(ctx, time.Microsecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if m, err := manager.Start(short, nil); err == nil {
		m.Close()
		t.Error("Start with an expired ctx worked")
	}
}

type startHangArgs struct {
	Out *mp.Conn
}

// startAndHang starts a manager, reports its server's pid and waits to be
// killed.
var startAndHang = mp.RegisterProc("manager_test.startAndHang", func(a startHangArgs) error {
	m, err := manager.Start(context.Background(), nil)
	if err != nil {
		return err
	}
	if err := a.Out.Send(m.Process().Pid()); err != nil {
		return err
	}
	time.Sleep(time.Minute)
	return nil
})

// TestServerEndsWithItsParent kills (SIGKILL) a process that started a
// manager: the server, a daemon, exits at once.
func TestServerEndsWithItsParent(t *testing.T) {
	ctx := testCtx(t)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skip("cannot adopt orphans:", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	r, w, err := mp.Pipe(false)
	check(t, err)
	defer r.Close()
	p := mp.NewProcess(startAndHang, startHangArgs{Out: w})
	err = p.Start()
	w.Close()
	check(t, err)
	var pid int
	if err := r.Recv(&pid); err != nil {
		p.Kill()
		p.Join(ctx)
		t.Fatal(err)
	}
	check(t, p.Kill())
	p.Join(ctx)
	// The orphaned server is now this process's to reap.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || err != nil {
			break
		}
		if time.Now().After(deadline) {
			unix.Kill(pid, unix.SIGKILL)
			unix.Wait4(pid, &ws, 0, nil)
			t.Fatal("the manager server outlived its parent by 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

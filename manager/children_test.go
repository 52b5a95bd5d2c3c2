//go:build linux

package manager_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

type recordArgs struct {
	Pids *manager.Dict[string, int]
	List *manager.List[int]
	Name string
}

// record writes the child's pid into a Dict and a List it received.
var record = mp.RegisterProc("manager_test.record", func(a recordArgs) error {
	ctx := context.Background()
	if err := a.Pids.Set(ctx, a.Name, os.Getpid()); err != nil {
		return err
	}
	return a.List.Append(ctx, os.Getpid())
})

func TestProxiesInChildren(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	pids := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
	list := must[*manager.List[int]](t)(manager.NewList[int](ctx, m, nil))
	var procs []*mp.Process
	for i := range 10 {
		p := mp.NewProcess(record, recordArgs{Pids: pids, List: list, Name: fmt.Sprint("w", i)})
		check(t, p.Start())
		procs = append(procs, p)
	}
	var want []int
	for _, p := range procs {
		check(t, p.Join(ctx))
		want = append(want, p.Pid())
	}
	slices.Sort(want)
	got := must[[]int](t)(list.All(ctx))
	slices.Sort(got)
	equal(t, "pids in the list", got, want)
	items := must[map[string]int](t)(pids.Map(ctx))
	equal(t, "workers in the dict", len(items), 10)
	for i, p := range procs {
		equal(t, p.Name, items[fmt.Sprint("w", i)], p.Pid())
	}
	// Every child's session has ended.
	waitFor(t, func() bool { st, _ := m.Stats(ctx); return st.Clients == 1 })
}

type incrArgs struct {
	V    *manager.Value[int]
	Lock *manager.Lock
	N    int
	D    int
}

var lockedIncr = mp.RegisterProc("manager_test.lockedIncr", func(a incrArgs) error {
	ctx := context.Background()
	for range a.N {
		if err := a.Lock.Acquire(ctx); err != nil {
			return err
		}
		v, err := a.V.Get(ctx)
		if err == nil {
			err = a.V.Set(ctx, v+a.D)
		}
		if rerr := a.Lock.Release(ctx); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	return nil
})

func TestValueUnderLockInChildren(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	v := must[*manager.Value[int]](t)(manager.NewValue(ctx, m, 0))
	l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
	a := mp.NewProcess(lockedIncr, incrArgs{V: v, Lock: l, N: 300, D: 1})
	b := mp.NewProcess(lockedIncr, incrArgs{V: v, Lock: l, N: 300, D: -1})
	check(t, a.Start())
	check(t, b.Start())
	check(t, a.Join(ctx))
	check(t, b.Join(ctx))
	equal(t, "value", must[int](t)(v.Get(ctx)), 0)
}

func TestNestedProxies(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	stats := func() manager.Stats {
		st, err := m.Stats(ctx)
		check(t, err)
		return st
	}
	base := stats().Objects
	outer := must[*manager.List[*manager.Dict[string, int]]](t)(manager.NewList[*manager.Dict[string, int]](ctx, m, nil))
	for i := range 3 {
		d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
		check(t, d.Set(ctx, "i", i))
		check(t, outer.Append(ctx, d))
		// The list keeps the dict alive.
		check(t, d.Forget(ctx))
	}
	equal(t, "objects", stats().Objects, base+4)
	inner := must[*manager.Dict[string, int]](t)(outer.Get(ctx, 1))
	equal(t, "inner i", must[int](t)(func() (int, error) { v, _, err := inner.Get(ctx, "i"); return v, err }()), 1)

	// A child reads the dicts out of the list and writes into them.
	p := mp.NewProcess(bumpNested, outer)
	check(t, p.Start())
	check(t, p.Join(ctx))
	all := must[[]*manager.Dict[string, int]](t)(outer.All(ctx))
	for i, d := range all {
		v, _, err := d.Get(ctx, "bumped")
		check(t, err)
		equal(t, fmt.Sprint("dict ", i, " bumped"), v, 10+i)
	}

	// Removing a dict from the list: it lives while this process refers to
	// it (it read it), and is freed once forgotten.
	popped := must[*manager.Dict[string, int]](t)(outer.Pop(ctx, 0))
	equal(t, "popped i", must[int](t)(func() (int, error) { v, _, err := popped.Get(ctx, "i"); return v, err }()), 0)
	check(t, popped.Forget(ctx))
	equal(t, "objects after forgetting the popped dict", stats().Objects, base+3)
	for _, d := range all[1:] {
		check(t, d.Forget(ctx))
	}
	check(t, outer.Forget(ctx))
	equal(t, "objects after forgetting the list", stats().Objects, base)
}

var bumpNested = mp.RegisterProc("manager_test.bumpNested", func(l *manager.List[*manager.Dict[string, int]]) error {
	ctx := context.Background()
	ds, err := l.All(ctx)
	if err != nil {
		return err
	}
	for _, d := range ds {
		i, _, err := d.Get(ctx, "i")
		if err != nil {
			return err
		}
		if err := d.Set(ctx, "bumped", 10+i); err != nil {
			return err
		}
	}
	return nil
})

// ---- registered types ----

type counter struct {
	mu   sync.Mutex
	n    int
	subs map[string]*counter
}

func newCounter(start int) (*counter, error) {
	if start < 0 {
		return nil, errors.New("negative start")
	}
	return &counter{n: start, subs: map[string]*counter{}}, nil
}

func (c *counter) Add(d int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	return c.n
}

func (c *counter) Get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counter) Fail(msg string) error { return errors.New(msg) }

func (c *counter) Crash() { panic("counter crashed") }

func (c *counter) Both() (int, string, error) { return c.Get(), "both", nil }

// Sub returns the sub-counter name, another registered object.
func (c *counter) Sub(name string) *counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.subs[name]
	if s == nil {
		s = &counter{subs: map[string]*counter{}}
		c.subs[name] = s
	}
	return s
}

// Absorb adds another counter's value: the proxy arrives as the object.
func (c *counter) Absorb(o *counter) int { return c.Add(o.Get()) }

// WaitAbove blocks until the counter exceeds n or ctx ends.
func (c *counter) WaitAbove(ctx context.Context, n int) (int, error) {
	for {
		if v := c.Get(); v > n {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (c *counter) unexported() {}

var counterType = manager.RegisterType("manager_test.counter", newCounter)

type secret struct{}

func (secret) Visible() string { return "visible" }
func (secret) Hidden() string  { return "hidden" }

var secretType = manager.RegisterType("manager_test.secret", func(struct{}) (*secret, error) { return &secret{}, nil }, "Visible")

func TestRegisteredTypes(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	c := must[*manager.Proxy[counter]](t)(counterType.New(ctx, m, 5))
	equal(t, "Add", must[int](t)(manager.Call[int](ctx, c, "Add", 3)), 8)
	var n int
	var s string
	check(t, c.Call(ctx, "Both", nil, &n, &s))
	equal(t, "Both", [2]any{n, s}, [2]any{8, "both"})

	err := c.Call(ctx, "Fail", []any{"it failed"})
	var re *mp.RemoteError
	if !errors.As(err, &re) || re.Message != "it failed" || re.Panic || re.Pid != m.ServerPid() {
		t.Errorf("Fail: %#v", err)
	}
	err = c.Call(ctx, "Crash", nil)
	if !errors.As(err, &re) || !re.Panic || re.Stack == "" {
		t.Errorf("Crash: %#v", err)
	}
	// The server survives the panic.
	equal(t, "Get after the panic", must[int](t)(manager.Call[int](ctx, c, "Get")), 8)

	for _, bad := range []string{"unexported", "Nope", "MarshalCBOR"} {
		if err := c.Call(ctx, bad, nil); !errors.Is(err, manager.ErrUnknownMethod) {
			t.Errorf("Call %s: %v", bad, err)
		}
	}
	if err := c.Call(ctx, "Add", []any{"x"}); err == nil {
		t.Error("Add with a string worked")
	}
	if err := c.Call(ctx, "Add", []any{1, 2}); err == nil {
		t.Error("Add with two arguments worked")
	}
	if _, err := counterType.New(ctx, m, -1); err == nil || !errors.As(err, &re) {
		t.Errorf("New(-1): %v", err)
	}
	sp := must[*manager.Proxy[secret]](t)(secretType.New(ctx, m, struct{}{}))
	equal(t, "Visible", must[string](t)(manager.Call[string](ctx, sp, "Visible")), "visible")
	if err := sp.Call(ctx, "Hidden", nil); !errors.Is(err, manager.ErrUnknownMethod) {
		t.Errorf("Hidden: %v", err)
	}

	// A method returning a registered object returns a proxy of it; the
	// same object gives the same proxy.
	sub := must[*manager.Proxy[counter]](t)(manager.Call[*manager.Proxy[counter]](ctx, c, "Sub", "a"))
	must[int](t)(manager.Call[int](ctx, sub, "Add", 100))
	again := must[*manager.Proxy[counter]](t)(manager.Call[*manager.Proxy[counter]](ctx, c, "Sub", "a"))
	equal(t, "the same sub", must[int](t)(manager.Call[int](ctx, again, "Get")), 100)
	if _, err := manager.Call[*manager.Proxy[secret]](ctx, c, "Sub", "a"); !errors.Is(err, manager.ErrWrongKind) {
		t.Errorf("a counter decoded as a secret: %v", err)
	}
	// A proxy given as an argument arrives as the object.
	equal(t, "Absorb", must[int](t)(manager.Call[int](ctx, c, "Absorb", sub)), 108)
	if err := c.Call(ctx, "Absorb", []any{sp}); err == nil {
		t.Error("Absorb of a secret worked")
	}

	// A method taking a ctx is cancelled with the caller's.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = manager.Call[int](short, c, "WaitAbove", 1000)
	cancel()
	if !errors.As(err, &re) || re.Message != context.Canceled.Error() {
		t.Errorf("WaitAbove cancelled: %v", err)
	}
	got := make(chan int, 1)
	go func() { v, _ := manager.Call[int](ctx, c, "WaitAbove", 200); got <- v }()
	waitFor(t, func() bool { return serverWaiters(t, m) == 1 })
	must[int](t)(manager.Call[int](ctx, c, "Add", 100))
	equal(t, "WaitAbove", <-got, 208)

	// Proxies travel to children.
	p := mp.NewProcess(addInChild, c)
	check(t, p.Start())
	check(t, p.Join(ctx))
	equal(t, "after the child", must[int](t)(manager.Call[int](ctx, c, "Get")), 1208)

	// Named instances.
	n1 := must[*manager.Proxy[counter]](t)(counterType.New(ctx, m, 1, manager.Named("shared")))
	n2 := must[*manager.Proxy[counter]](t)(counterType.New(ctx, m, 99, manager.Named("shared")))
	must[int](t)(manager.Call[int](ctx, n1, "Add", 1))
	equal(t, "named", must[int](t)(manager.Call[int](ctx, n2, "Get")), 2)
}

var addInChild = mp.RegisterProc("manager_test.addInChild", func(c *manager.Proxy[counter]) error {
	_, err := manager.Call[int](context.Background(), c, "Add", 1000)
	return err
})

// TestRegisterTypePanics makes each documented registration mistake: each
// panics, with a message that says what is wrong (for one type under a
// second name, the name it already has).
func TestRegisterTypePanics(t *testing.T) {
	for name, c := range map[string]struct {
		f    func()
		want string
	}{
		"reserved":  {func() { manager.RegisterType("dict", newCounter) }, `"dict"`},
		"duplicate": {func() { manager.RegisterType("manager_test.counter", newCounter) }, "manager_test.counter"},
		"missing":   {func() { manager.RegisterType("manager_test.x", newCounter, "Nope") }, "Nope"},
		"nil":       {func() { manager.RegisterType[counter, int]("manager_test.y", nil) }, "nil"},
		"type twice": {func() { manager.RegisterType("manager_test.counter2", newCounter) },
			`already registered as "manager_test.counter"`},
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Errorf("%s: no panic", name)
				} else if msg := fmt.Sprint(r); !strings.Contains(msg, c.want) {
					t.Errorf("%s: panic %q does not say %q", name, msg, c.want)
				}
			}()
			c.f()
		}()
	}
}

// TestProxyFindsItsManager decodes a token that names the manager by
// another address: the proxy still uses the Manager this process has for
// that run of the server.
func TestProxyFindsItsManager(t *testing.T) {
	ctx := testCtx(t)
	key := []byte("a key of its own")
	m, err := manager.Start(ctx, &manager.Options{Network: "tcp", Address: "127.0.0.1:0", Authkey: key})
	check(t, err)
	defer m.Close()
	d := must[*manager.Dict[string, int]](t)(manager.NewDict[string, int](ctx, m))
	check(t, d.Set(ctx, "x", 1))
	b := must[[]byte](t)(d.MarshalCBOR())
	_, port, _ := strings.Cut(m.Address(), ":")
	b = bytes.Replace(b, []byte("127.0.0.1:"+port), []byte("localhost:"+port), 1)
	var other manager.Dict[string, int]
	check(t, other.UnmarshalCBOR(b))
	v, ok, err := other.Get(ctx, "x")
	check(t, err)
	equal(t, "Get through the renamed token", [2]any{v, ok}, [2]any{1, true})
}

type hammerArgs struct {
	Lock *manager.Lock
	Stop *manager.Event
}

// hammer takes and releases a lock as fast as it can until told to stop.
var hammer = mp.RegisterProc("manager_test.hammer", func(a hammerArgs) error {
	ctx := context.Background()
	for i := 1; ; i++ {
		if err := a.Lock.Acquire(ctx); err != nil {
			return err
		}
		if err := a.Lock.Release(ctx); err != nil {
			return err
		}
		if i%1000 == 0 {
			if set, err := a.Stop.IsSet(ctx); err != nil || set {
				return err
			}
		}
	}
})

// A process that releases and takes a lock in a loop may overtake a
// waiter, but every wake-up of the waiter must lead to the lock: a lost
// wake-up would leave this Acquire waiting for its whole timeout. (The
// bound on overtaking itself is tested in TestLockBargingBounded.)
func TestLockWaiterNotStarved(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	l := must[*manager.Lock](t)(manager.NewLock(ctx, m))
	stop := must[*manager.Event](t)(manager.NewEvent(ctx, m))
	p := mp.NewProcess(hammer, hammerArgs{Lock: l, Stop: stop})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stop.Set(ctx)
		if err := p.Join(ctx); err != nil {
			t.Error(err)
		}
		if code, _ := p.ExitCode(); code != 0 {
			t.Errorf("hammer exit code %d", code)
		}
	}()
	for range 50 {
		// Each Acquire waits for the hammer at most about starveAfter
		// (1 ms), however fast it goes; a second is a generous bound.
		short, cancel := context.WithTimeout(ctx, time.Second)
		err := l.Acquire(short)
		cancel()
		if err != nil {
			t.Fatalf("waiter starved: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

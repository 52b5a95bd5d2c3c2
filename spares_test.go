//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

// withSpares keeps n spares for the test, and none after it: the spares
// that are left must be gone once SetSpares(0) has returned.
func withSpares(t *testing.T, n int) []int {
	t.Helper()
	mp.SetSpares(n)
	t.Cleanup(func() {
		left := mp.IdleSparePids()
		mp.SetSpares(0)
		if pids := mp.IdleSparePids(); len(pids) > 0 {
			t.Errorf("idle spares after SetSpares(0): %v", pids)
		}
		for _, pid := range left {
			if err := unix.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("spare %d still there after SetSpares(0): %v", pid, err)
			}
		}
	})
	pids := mp.IdleSparePids()
	if len(pids) != n {
		t.Fatalf("SetSpares(%d) returned with spares %v", n, pids)
	}
	return pids
}

// startWarm starts p, which must take the oldest idle spare.
func startWarm(t *testing.T, p *mp.Process) *mp.Process {
	t.Helper()
	idle := mp.IdleSparePids()
	if len(idle) == 0 {
		t.Fatal("no idle spare")
	}
	start(t, p)
	if p.Pid() != idle[0] {
		t.Fatalf("%s started as %d, not in the spare %d", p.Name, p.Pid(), idle[0])
	}
	return p
}

const warmEnv = "MP_TEST_WARM"

type warmArgs struct {
	Out  *mp.Conn
	Lock *mp.Lock
}

// warmInfo is what warmReport sends.
type warmInfo struct {
	Info     info
	Env      string
	LockHeld bool // TryAcquire failed: the parent holds the Lock
	FDs      []childFD
}

// warmReport reports what a child got from its parent.
var warmReport = mp.RegisterProc("test.warmReport", func(a warmArgs) error {
	defer a.Out.Close()
	fds, err := ownFDs()
	if err != nil {
		return err
	}
	return a.Out.Send(warmInfo{Info: describe(), Env: os.Getenv(warmEnv), LockHeld: !a.Lock.TryAcquire(), FDs: fds})
})

// TestSpareRunsTarget starts targets in spares: each gets its Process's
// name and daemon flag, the parent's identity, the environment at Start,
// a Conn and a Lock that work, none of the descriptors the parent had
// open when the spare started, its exit code and cancellation; and only a
// started one is an active child.
func TestSpareRunsTarget(t *testing.T) {
	t.Setenv(warmEnv, "before")
	path := filepath.Join(t.TempDir(), "inherit-me")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0) // without O_CLOEXEC: the spares get it
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	withSpares(t, 2)
	if kids := mp.ActiveChildren(); len(kids) != 0 {
		t.Fatalf("idle spares listed as active children: %v", kids)
	}
	ctx := ctxTimeout(t, 30*time.Second)
	lock, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	if !lock.TryAcquire() {
		t.Fatal("a new Lock is held")
	}
	r, w := pipe(t, false)
	p := mp.NewProcess(warmReport, warmArgs{Out: w, Lock: lock})
	p.Name, p.Daemon = "warm-daemon", true
	startWarm(t, p)
	w.Close()
	if kids := mp.ActiveChildren(); len(kids) != 1 || kids[0] != p {
		t.Errorf("ActiveChildren = %v, want only %v", kids, p)
	}
	var got warmInfo
	if err := r.Recv(&got); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	want := info{Name: "warm-daemon", Pid: p.Pid(), Daemon: true, Authkey: mp.CurrentProcess().Authkey, ParentName: "MainProcess", ParentPid: os.Getpid()}
	if g := got.Info; g.Name != want.Name || g.Pid != want.Pid || !g.Daemon || string(g.Authkey) != string(want.Authkey) ||
		g.ParentName != want.ParentName || g.ParentPid != want.ParentPid {
		t.Errorf("the spare's target saw %+v, want %+v", g, want)
	}
	if got.Env != "before" {
		t.Errorf("%s=%q in the spare, want %q", warmEnv, got.Env, "before")
	}
	if !got.LockHeld {
		t.Error("the Lock held by the parent was free in the spare")
	}
	for _, f := range got.FDs {
		if f.Path == path || f.FD > 2 && !f.CloExec {
			t.Errorf("descriptor %d (%s) inherited by the spare", f.FD, f.Path)
		}
	}

	// Exit codes, and a target that sees its ctx cancelled by Terminate.
	for how, code := range map[string]int{"exit3": 3, "error": 1} {
		p := startWarm(t, mp.NewProcess(fail, how))
		p.Join(ctx)
		if got, _ := p.ExitCode(); got != code {
			t.Errorf("fail(%q) in a spare: exit code %d, want %d", how, got, code)
		}
		mp.SetSpares(2) // for the next: the one used is replaced in the background
	}
	r, w = pipe(t, false)
	p = mp.NewProcess(ctxWatcher, ctxArgs{Out: w})
	p.CancelGrace = time.Minute
	startWarm(t, p)
	w.Close()
	recvPid(t, r)
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	recvCancelled(t, r)
	if err := p.Join(ctx); err != nil {
		t.Errorf("a ctx target in a spare after Terminate: %v, want its own end", err)
	}
}

// TestSpareEnvironmentAtStart changes the environment after the spares
// started: the next Start does not use them (its child sees the
// environment of the Start), and they are replaced by spares with the new
// environment, which the following Start uses.
func TestSpareEnvironmentAtStart(t *testing.T) {
	t.Setenv(warmEnv, "old")
	stale := withSpares(t, 1)
	os.Setenv(warmEnv, "new")
	ctx := ctxTimeout(t, 30*time.Second)
	lock, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	run := func() (int, string) {
		t.Helper()
		r, w := pipe(t, false)
		p := start(t, mp.NewProcess(warmReport, warmArgs{Out: w, Lock: lock}))
		w.Close()
		var got warmInfo
		if err := r.Recv(&got); err != nil {
			t.Fatal(err)
		}
		if err := p.Join(ctx); err != nil {
			t.Fatal(err)
		}
		return p.Pid(), got.Env
	}
	if pid, env := run(); pid == stale[0] || env != "new" {
		t.Errorf("Start after the environment changed: pid %d (the stale spare: %d), %s=%q, want a cold child and %q", pid, stale[0], warmEnv, env, "new")
	}
	mp.SetSpares(1) // waits for the replacement
	fresh := mp.IdleSparePids()
	if len(fresh) != 1 || fresh[0] == stale[0] {
		t.Fatalf("spares %v after the stale %d", fresh, stale[0])
	}
	if err := unix.Kill(stale[0], 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the stale spare %d is still there: %v", stale[0], err)
	}
	if pid, env := run(); pid != fresh[0] || env != "new" {
		t.Errorf("Start with a fresh spare: pid %d (spare %d), %s=%q, want %q", pid, fresh[0], warmEnv, env, "new")
	}
}

// TestSpareRunsOnlyRegisteredTargets: a target unknown to the parent is
// refused at Start, and the spare stays idle; one the child does not know
// (registered in the parent only) fails in the spare as in a cold child.
func TestSpareRunsOnlyRegisteredTargets(t *testing.T) {
	pids := withSpares(t, 1)
	type unregistered struct{ runner }
	if err := mp.NewRunnerProcess(&unregistered{}).Start(); !errors.Is(err, mp.ErrUnknownTarget) {
		t.Errorf("unregistered runner: %v", err)
	}
	if err := mp.NewProcess(&mp.Func[int, int]{}, 1).Start(); !errors.Is(err, mp.ErrUnknownTarget) {
		t.Errorf("target without a name: %v", err)
	}
	if idle := mp.IdleSparePids(); !slices.Equal(idle, pids) {
		t.Errorf("spares %v after refused Starts, want %v", idle, pids)
	}
	p := startWarm(t, mp.NewProcess(late(), 1))
	err := p.Join(ctxTimeout(t, 30*time.Second))
	var re *mp.RemoteError
	if !errors.Is(err, mp.ErrUnknownTarget) || !errors.As(err, &re) {
		t.Errorf("a target unknown to the spare: %v, want a *RemoteError matching ErrUnknownTarget", err)
	}
}

type middleArgs struct {
	Out *mp.Conn
	N   int
}

// keepSpares keeps N spares, reports their pids and sleeps.
var keepSpares = mp.RegisterProc("test.keepSpares", func(a middleArgs) error {
	mp.SetSpares(a.N)
	if err := a.Out.Send(mp.IdleSparePids()); err != nil {
		return err
	}
	a.Out.Close()
	time.Sleep(time.Minute)
	return nil
})

// TestSparesDieWithParent SIGKILLs a process that keeps spares: they
// exit, through the lifeline.
func TestSparesDieWithParent(t *testing.T) {
	adoptOrphans(t)
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(keepSpares, middleArgs{Out: w, N: 2}))
	w.Close()
	var pids []int
	if err := r.Recv(&pids); err != nil {
		t.Fatal(err)
	}
	if len(pids) != 2 {
		t.Fatalf("the middle process reported spares %v", pids)
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
			reapWithin(pid, 5*time.Second)
		}
	})
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); err != nil {
			t.Fatalf("spare %d: %v", pid, err)
		}
	}
	p.Kill()
	p.Join(context.Background())
	for _, pid := range pids {
		if err := reapWithin(pid, 5*time.Second); err != nil {
			t.Errorf("spare %d after its parent was SIGKILLed: %v", pid, err)
		}
	}
}

// TestSetSparesZeroEndsIdleSpares: SetSpares(0) returns once the idle
// spares are gone (withSpares's cleanup checks it too), and a lower
// number ends those beyond it.
func TestSetSparesZeroEndsIdleSpares(t *testing.T) {
	pids := withSpares(t, 3)
	mp.SetSpares(1)
	if idle := mp.IdleSparePids(); !slices.Equal(idle, pids[:1]) {
		t.Errorf("SetSpares(1) left %v of %v", idle, pids)
	}
	for _, pid := range pids[1:] {
		if err := unix.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("spare %d still there after SetSpares(1): %v", pid, err)
		}
	}
	mp.SetSpares(0)
	if err := unix.Kill(pids[0], 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("spare %d still there after SetSpares(0): %v", pids[0], err)
	}
}

// TestSpareReplacedInBackground holds the filler before it starts the
// replacement of a spare that Start used: Start has returned all the
// same, and the replacement comes once the filler goes on; a spare used
// by a child that runs on is replaced too.
func TestSpareReplacedInBackground(t *testing.T) {
	used := withSpares(t, 1)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	mp.SetTestHookFill(func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	defer mp.SetTestHookFill(nil)
	ctx := ctxTimeout(t, 30*time.Second)
	p := startWarm(t, mp.NewProcess(fail, "")) // the filler is held: Start returned anyway
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("no replacement started")
	}
	if idle := mp.IdleSparePids(); len(idle) != 0 {
		t.Errorf("idle spares %v while the filler is held", idle)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	mp.SetSpares(1) // waits for the replacement to be ready
	if idle := mp.IdleSparePids(); len(idle) != 1 || idle[0] == used[0] {
		t.Errorf("spares %v after %d was used", idle, used[0])
	}
	mp.SetTestHookFill(nil)

	// A child that runs on does not keep its spare from being replaced.
	sleeper := startWarm(t, mp.NewProcess(fail, "sleep"))
	for len(mp.IdleSparePids()) == 0 {
		if ctx.Err() != nil {
			t.Fatal("the spare of a running child was not replaced")
		}
		time.Sleep(time.Millisecond)
	}
	if !sleeper.IsAlive() {
		t.Error("the child ended")
	}
}

// TestPoolWorkersFromSpares: a pool's workers are started by Start, so
// from spares.
func TestPoolWorkersFromSpares(t *testing.T) {
	pids := withSpares(t, 1)
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	if v, err := double.Apply(ctx, pool, 21); err != nil || v != 42 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
	ws := pool.Stats()
	if len(ws) != 1 || ws[0].Pid != pids[0] {
		t.Errorf("workers %+v, want the spare %d", ws, pids[0])
	}
}

// TestStartAfterIdleSpareDied kills the idle spare, and holds its watcher
// once it has reaped it, while the spare is still listed as idle: Start
// finds its control connection dead, and starts the child cold instead.
// Once the watcher goes on, the spare is gone from the list. Then the
// same without holding the watcher: a spare that died idle is dropped.
func TestStartAfterIdleSpareDied(t *testing.T) {
	pids := withSpares(t, 1)
	reaped, release := make(chan int, 1), make(chan struct{})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo) // before withSpares's, which waits for the watcher
	mp.SetTestHookSpareReaped(func(pid int) {
		if pid == pids[0] {
			reaped <- pid
			<-release
		}
	})
	defer mp.SetTestHookSpareReaped(nil)
	ctx := ctxTimeout(t, 30*time.Second)
	if err := unix.Kill(pids[0], unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reaped:
	case <-ctx.Done():
		t.Fatal("the killed spare was not reaped")
	}
	if idle := mp.IdleSparePids(); !slices.Equal(idle, pids) {
		t.Fatalf("idle spares %v, want the dead one %v still listed", idle, pids)
	}
	p := mp.NewProcess(fail, "exit3")
	if err := p.Start(); err != nil {
		letGo()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); p.Join(context.Background()) })
	t.Cleanup(letGo) // first: the watcher may be the one that reaps p
	if p.Pid() == pids[0] {
		t.Fatal("Start used the dead spare")
	}
	p.Join(ctx)
	if code, _ := p.ExitCode(); code != 3 {
		t.Errorf("the child started instead of the dead spare: exit code %d, want 3", code)
	}
	letGo()
	mp.SetTestHookSpareReaped(nil)

	pids = withSpares(t, 1)
	if err := unix.Kill(pids[0], unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for slices.Contains(mp.IdleSparePids(), pids[0]) {
		if ctx.Err() != nil {
			t.Fatal("a spare that died idle stays listed")
		}
		time.Sleep(time.Millisecond)
	}
	p = start(t, mp.NewProcess(fail, ""))
	if err := p.Join(ctx); err != nil || p.Pid() == pids[0] {
		t.Errorf("Start after the idle spare died: pid %d (the dead spare %d), %v", p.Pid(), pids[0], err)
	}
}

// mappedEnv names a directory whose files clean and own this test binary
// maps read-only at package initialisation when it is set, as a spare
// maps its own code (see TestSpareDropsFilePages): clean only read, own
// written once before it was made read-only, as the dynamic loader does
// to a relocated segment.
const mappedEnv = "MP_TEST_MAPPED"

// mappedSize is the size of each file of mappedEnv: 16 pages.
const mappedSize = 16 << 12

var mapped struct{ clean, own []byte }

// mappedSum is what mapReadOnly reads, so that the reads stay.
var mappedSum int

func init() {
	dir := os.Getenv(mappedEnv)
	if dir == "" {
		return
	}
	mapped.clean = mapReadOnly(filepath.Join(dir, "clean"), false)
	mapped.own = mapReadOnly(filepath.Join(dir, "own"), true)
}

// mapReadOnly maps path privately and reads every page of it; with
// write, it first writes 'X' at its start (so that page is this
// process's own), then makes it read-only. It returns nil on failure,
// which the target mappedCheck reports.
func mapReadOnly(path string, write bool) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	prot := unix.PROT_READ
	if write {
		prot |= unix.PROT_WRITE
	}
	b, err := unix.Mmap(int(f.Fd()), 0, mappedSize, prot, unix.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	if write {
		b[0] = 'X'
		if unix.Mprotect(b, unix.PROT_READ) != nil {
			return nil
		}
	}
	for i := 0; i < len(b); i += 4096 {
		mappedSum += int(b[i])
	}
	return b
}

// mappedCheck fails unless the mappings of mappedEnv read as written:
// 'a' everywhere, but for the 'X' written into own.
var mappedCheck = mp.RegisterProc("test.mappedCheck", func(struct{}) error {
	if mapped.clean == nil || mapped.own == nil {
		return errors.New("the files of " + mappedEnv + " are not mapped")
	}
	for i, c := range mapped.clean {
		if c != 'a' {
			return fmt.Errorf("clean[%d] = %q", i, c)
		}
	}
	for i, c := range mapped.own {
		if want := byte('a'); i == 0 && c != 'X' || i > 0 && c != want {
			return fmt.Errorf("own[%d] = %q", i, c)
		}
	}
	return nil
})

// mappingRss returns the resident size in kB of the mapping of path in
// process pid, from /proc/PID/smaps.
func mappingRss(t *testing.T, pid int, path string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-"):
			in = f[5] == path
		case in && len(f) == 3 && f[0] == "Rss:":
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps of %d: %q", pid, line)
			}
			return kb
		}
	}
	t.Fatalf("%s is not mapped in %d", path, pid)
	return 0
}

// TestSpareDropsFilePages has the spares map two files read-only and
// read all of them as they start: once ready, a spare has none of the
// pages of the file it only read mapped (its exit would have to unmap
// them, on the way to Join), but keeps the one it wrote before making
// it read-only, whose whole mapping it keeps; and a target started in
// it reads both as written.
func TestSpareDropsFilePages(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"clean", "own"} {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{'a'}, mappedSize), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(mappedEnv, dir)
	pid := withSpares(t, 1)[0]
	if kb := mappingRss(t, pid, filepath.Join(dir, "clean")); kb != 0 {
		t.Errorf("an idle spare has %d kB of a read-only file it read mapped, want 0", kb)
	}
	if kb := mappingRss(t, pid, filepath.Join(dir, "own")); kb != mappedSize>>10 {
		t.Errorf("an idle spare has %d kB of a read-only mapping with a page of its own mapped, want all %d", kb, mappedSize>>10)
	}
	p := startWarm(t, mp.NewProcess(mappedCheck, struct{}{}))
	if err := p.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
}

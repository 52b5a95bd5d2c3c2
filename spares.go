//go:build linux

package mp

import (
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// SetSpares sets how many spare children this process keeps ready: each
// is this binary started ahead of time and waiting in [Main] for a
// target, so that [Process.Start] (and so a [Pool] or an [Executor]
// starting a worker) hands its target to a spare instead of starting a
// process. A warm Start and Join of a trivial target takes a fraction of
// a cold one (mp bench spawn_warm against spawn). The default is 0: none.
//
// A spare costs memory while it waits: its proportional set size (PSS in
// /proc/PID/smaps_rollup) measured 1.3 MB (0.8 MB private, 3.5 MB
// resident) for a 4.6 MB program and 2.4 MB (1.1 MB private, 7.5 MB
// resident) for a 10 MB one importing net/http, built without -race with
// Go 1.26 on linux/amd64: the binary's code is shared with this process. It also
// costs the start of a process, for nothing if it is never used. So the
// default is none: most programs start few children, and a spare is an
// extra process in their listings and leak checks.
//
// Before it says it waits, a spare unmaps the pages of its read-only file
// mappings (its code and constant data) that its start faulted in; its
// warm-up for a Start maps some of them again. Its exit, on the way from
// the target's return to Join, would otherwise unmap them one by one:
// for mp bench spawn_warm (0.7-1 ms a Start and Join), the kernel's
// exit_mmap in the child took 0.42 ms a child, 0.30 ms with the pages
// dropped. The pages stay in the page cache. That also lowers the figures
// above, measured before: a spare of the test binary of this package (20
// MB) has 6.5 MB resident instead of 10.2 MB.
//
// SetSpares starts the missing spares, replacing idle ones that a Start
// would not use (see below), and returns once n spares wait for a target
// (about as long as one cold Start takes, for those it had to start); or,
// when n is below the number of idle spares, once those beyond n have
// ended and been reaped: SetSpares(0) leaves no spare behind. A spare that
// Start used is replaced in the background, never delaying Start: once
// the child that took it has ended, or 10 ms after the Start if it runs
// longer (so that the replacement does not compete with that child for
// the processors as it starts). One that died idle, killed by someone
// else, is replaced after the next Start. In a daemon process, which may
// not start children, SetSpares does nothing.
//
// What a child started from a spare gets is what a child started at once
// gets: the Process's Name, Daemon, Authkey and CancelGrace, its argument
// with the handles in it, [ParentProcess], the lifeline and the exit code,
// and none of the descriptors this process had open. A spare is used only
// if the environment (so the environment is the one at Start, as for
// every child), the working directory and os.Stdout and os.Stderr are
// those it was started with; a Start that finds them changed starts its
// child cold, and the stale spares are ended and replaced. Other
// attributes a process inherits (resource limits, umask, ignored signals,
// credentials) and what package initialisation read are those of the
// moment the spare started.
//
// Spares never run anything but a registered target, named by a Start of
// this process. They are not children until then: [ActiveChildren] does
// not list them. They end with this process, however it ends (they hold
// the lifeline too).
func SetSpares(n int) {
	n = max(n, 0)
	self.Lock()
	daemon := self.info.Daemon
	self.Unlock()
	if daemon {
		return
	}
	key := currentKey()
	spares.Lock()
	spares.want = n
	spares.idle = slices.DeleteFunc(spares.idle, func(s *spare) bool {
		stale := !s.key.matches(key)
		if stale {
			discardLocked(s)
		}
		return stale
	})
	for len(spares.idle) > n {
		s := spares.idle[len(spares.idle)-1]
		spares.idle = spares.idle[:len(spares.idle)-1]
		discardLocked(s)
	}
	missing := max(n-len(spares.idle)-spares.starting, 0)
	spares.starting += missing
	spares.begun += missing
	begun := spares.begun
	spares.Unlock()
	for range missing {
		startCounted() // one that fails to start is not waited for
	}
	// Wait for the spares being started when SetSpares was called (by the
	// filler, say) as for its own, then for all to be ready.
	spares.Lock()
	for spares.ended < begun || spares.dying > 0 {
		spares.cond.Wait()
	}
	idle := slices.Clone(spares.idle)
	spares.Unlock()
	for _, s := range idle {
		<-s.ready
	}
}

// A spare is a child started by startChild as a spare: it says on its
// control connection that it waits, then waits there for a boot message.
type spare struct {
	osp   *os.Process
	ctrl  *Conn
	key   spareKey
	ready chan struct{} // closed once the child said it waits, or died
	// owner receives, once the spare is no longer idle, the Process it
	// runs the target of, or nil when it was discarded.
	owner chan *Process
}

// spareKey is what a child gets from the moment it is started and a
// Start can check cheaply: a spare is used only when its key is the
// current one.
type spareKey struct {
	env            []string
	dir            string // "" when the working directory is unknown: never matches
	stdout, stderr *os.File
}

func currentKey() spareKey {
	dir, err := unix.Getwd()
	if err != nil {
		dir = ""
	}
	return spareKey{env: os.Environ(), dir: dir, stdout: os.Stdout, stderr: os.Stderr}
}

func (k spareKey) matches(cur spareKey) bool {
	return k.dir != "" && k.dir == cur.dir && k.stdout == cur.stdout && k.stderr == cur.stderr &&
		slices.Equal(k.env, cur.env)
}

// spares holds this process's spares.
var spares struct {
	sync.Mutex
	cond     sync.Cond // signalled when starting or dying goes down
	want     int
	idle     []*spare // oldest first
	starting int      // being started, by SetSpares or the filler
	// begun and ended count the spares whose start began and ended (with
	// or without a spare), so that SetSpares waits for those under way.
	begun, ended int
	dying        int  // discarded and not yet reaped
	filling      bool // the filler runs
	// refillDue: a timer will call refill (see refillLater).
	refillDue bool
}

func init() { spares.cond.L = &spares.Mutex }

// Hooks set only by tests: testHookFill runs in the filler before it
// starts a spare, testHookSpareReaped in a spare's watcher once it has
// reaped the spare (pid), before it looks whether the spare was idle.
var (
	testHookFill        atomic.Pointer[func()]
	testHookSpareReaped atomic.Pointer[func(pid int)]
)

// startCounted starts a spare that spares.starting counted, and makes it
// idle (or discards it if it is no longer wanted).
func startCounted() (*spare, error) {
	s, err := startSpare()
	spares.Lock()
	defer spares.Unlock()
	spares.starting--
	spares.ended++
	spares.cond.Broadcast()
	if err != nil {
		return nil, err
	}
	addLocked(s)
	return s, nil
}

// startSpare starts a spare and the goroutine that watches it.
func startSpare() (*spare, error) {
	key := currentKey()
	osp, ctrl, err := startChild(key.env, true)
	if err != nil {
		return nil, err
	}
	s := &spare{osp: osp, ctrl: ctrl, key: key, ready: make(chan struct{}), owner: make(chan *Process, 1)}
	go s.watch()
	return s, nil
}

// watch reads the spare's ready message, then whatever it reports, and
// reaps it: as an idle spare that died, as a discarded one, or as the
// child of the Process it was given to, whose reaper it then is.
func (s *spare) watch() {
	if _, err := s.ctrl.RecvBytes(1); err != nil {
		s.osp.Kill() // dead already, or not a spare of this binary
	}
	close(s.ready)
	var res resultMsg
	gotResult := s.ctrl.Recv(&res) == nil
	code := waitExit(s.osp)
	if h := testHookSpareReaped.Load(); h != nil {
		(*h)(s.osp.Pid)
	}
	spares.Lock()
	if i := slices.Index(spares.idle, s); i >= 0 {
		// It died idle (killed by someone else): nobody is told, and the
		// next Start replaces it (not at once: what killed it, the OOM
		// killer say, may kill the next too).
		spares.idle = slices.Delete(spares.idle, i, i+1)
		spares.Unlock()
		s.ctrl.Close()
		return
	}
	spares.Unlock()
	p := <-s.owner
	if p == nil {
		s.ctrl.Close()
		spares.Lock()
		spares.dying--
		spares.cond.Broadcast()
		spares.Unlock()
		return
	}
	p.finish(s.ctrl, gotResult, res.Err, code)
	// Its replacement need not wait for refillDelay any longer; but the
	// goroutine that Join woke goes first: a filler started now would
	// take its place on this P (a new goroutine runs next), and starting
	// a process takes a while (spawn_warm: Join returned 20-100 µs later).
	runtime.Gosched()
	spares.Lock()
	fillLocked()
	spares.Unlock()
}

// addLocked makes s idle, or discards it if it is no longer wanted.
// spares is locked.
func addLocked(s *spare) {
	if len(spares.idle) >= spares.want {
		discardLocked(s)
		return
	}
	spares.idle = append(spares.idle, s)
}

// discardLocked ends s, which is no longer idle; its watcher reaps it.
// spares is locked.
func discardLocked(s *spare) {
	spares.dying++
	s.osp.Kill()
	s.owner <- nil
}

// discard is discardLocked for a spare taken by takeSpare.
func (s *spare) discard() {
	spares.Lock()
	discardLocked(s)
	spares.Unlock()
}

// takeSpare returns an idle spare that matches the current key, or nil,
// and has the spares that no longer match ended. The caller gives it to
// a Process (s.owner <- p) or discards it. Either way, the spares are
// replenished later (see refillLater).
func takeSpare() *spare {
	spares.Lock()
	defer spares.Unlock()
	if spares.want == 0 && len(spares.idle) == 0 {
		return nil // no spares: not even the key is read
	}
	defer refillLater()
	key := currentKey()
	for len(spares.idle) > 0 {
		s := spares.idle[0]
		spares.idle = slices.Delete(spares.idle, 0, 1)
		if s.key.matches(key) {
			return s
		}
		discardLocked(s)
	}
	return nil
}

// bootSpare sends boot to a spare that matches the current key and
// returns it, or nil if there is none alive.
func bootSpare(boot *bootMsg) *spare {
	for s := takeSpare(); s != nil; s = takeSpare() {
		if s.ctrl.Send(boot) == nil {
			return s
		}
		s.discard() // it died (killed by someone else) since it was idle
	}
	return nil
}

// refillDelay is how long after a Start that used a spare (or found only
// stale ones) the filler starts, unless the child that took the spare has
// ended before: a process starting meanwhile would compete with that
// child for the processors. On two cores it doubled the time of a Start
// and Join of a trivial target (mp bench spawn_warm: 0.8-1.0 ms without,
// 1.7-2.8 ms with a replacement starting at Start).
const refillDelay = 10 * time.Millisecond

// refillLater has the filler start within refillDelay, unless it is
// already due. spares is locked.
func refillLater() {
	if !spares.refillDue {
		spares.refillDue = true
		time.AfterFunc(refillDelay, refill)
	}
}

// refill starts the filler if spares are missing.
func refill() {
	spares.Lock()
	spares.refillDue = false
	fillLocked()
	spares.Unlock()
}

// fillLocked starts the filler if spares are missing. spares is locked.
func fillLocked() {
	if spares.filling || len(spares.idle)+spares.starting >= spares.want {
		return
	}
	spares.filling = true
	go fill()
}

// fill starts spares one after the other until there are as many as
// wanted, or one fails to start.
func fill() {
	spares.Lock()
	defer spares.Unlock()
	for len(spares.idle)+spares.starting < spares.want {
		spares.starting++
		spares.begun++
		spares.Unlock()
		if h := testHookFill.Load(); h != nil {
			(*h)()
		}
		_, err := startCounted()
		spares.Lock()
		if err != nil {
			break // the next Start or SetSpares tries again
		}
	}
	spares.filling = false
}

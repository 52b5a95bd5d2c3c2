//go:build linux

package mp

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ProcessInfo describes the current process, as Python's current_process()
// does.
type ProcessInfo struct {
	Name    string // "MainProcess" in the main process, Process-N[:M...] in children
	Pid     int
	Daemon  bool
	Authkey []byte // 32 random bytes per process tree, inherited by children
}

// ParentInfo describes the process that started the current one.
type ParentInfo struct {
	Name  string
	Pid   int
	alive *atomic.Bool
}

// IsAlive reports whether the parent process is still running. It turns
// false as soon as the parent's end of the lifeline closes.
func (p *ParentInfo) IsAlive() bool { return p.alive.Load() }

var self struct {
	sync.Mutex
	info     ProcessInfo
	identity []int
	counter  int
	parent   *ParentInfo
}

func init() {
	self.info = ProcessInfo{Name: "MainProcess", Pid: os.Getpid()}
}

// CurrentProcess describes the calling process.
func CurrentProcess() ProcessInfo {
	self.Lock()
	defer self.Unlock()
	if self.info.Authkey == nil {
		self.info.Authkey = randomKey()
	}
	info := self.info
	info.Authkey = append([]byte(nil), info.Authkey...)
	return info
}

// ParentProcess describes the parent of the calling process, or returns nil
// in the main process.
func ParentProcess() *ParentInfo {
	self.Lock()
	defer self.Unlock()
	return self.parent
}

// randomKey returns 32 bytes from the kernel's random source. (It avoids
// crypto/rand so that the root package stays light to start.)
func randomKey() []byte {
	k := make([]byte, 32)
	for got := 0; got < len(k); {
		n, err := unix.Getrandom(k[got:], 0)
		if err != nil && err != unix.EINTR {
			panic("mp: getrandom: " + err.Error())
		}
		got += max(n, 0)
	}
	return k
}

// CPUCount returns the number of CPUs usable by the current process.
func CPUCount() int { return runtime.NumCPU() }

// WorkerID returns, in a pool worker (of a Pool or an Executor), the
// worker's slot: a number from 0 to the pool's Processes-1 that no other
// worker of the pool has at the same time, and that a worker replacing
// another (recycled, or after a death or a task timeout) takes over from
// it. So a task can use it to pick a per-worker resource (a file, a port,
// a GPU) that outlives each worker. It returns -1 anywhere else: in the
// parent, in a child started with NewProcess, and in children that a
// worker starts.
func WorkerID() int { return int(workerSlot.Load()) - 1 }

// workerSlot is WorkerID()+1, so that its zero value means none. A pool
// worker sets it before its initializer runs.
var workerSlot atomic.Int32

// nextIdentity returns the identity and default name of a new child.
func nextIdentity() ([]int, string) {
	self.Lock()
	defer self.Unlock()
	self.counter++
	id := append(append([]int(nil), self.identity...), self.counter)
	parts := make([]string, len(id))
	for i, n := range id {
		parts[i] = strconv.Itoa(n)
	}
	return id, "Process-" + strings.Join(parts, ":")
}

// children holds started children that have not been reaped.
var children struct {
	sync.Mutex
	set map[*Process]struct{}
}

// ActiveChildren returns the children of the current process that are still
// running. Finished children are reaped by mp as they exit, so none is
// returned (or left as a zombie).
func ActiveChildren() []*Process {
	children.Lock()
	defer children.Unlock()
	out := make([]*Process, 0, len(children.set))
	for p := range children.set {
		out = append(out, p)
	}
	return out
}

func addChild(p *Process) {
	children.Lock()
	if children.set == nil {
		children.set = map[*Process]struct{}{}
	}
	children.set[p] = struct{}{}
	children.Unlock()
}

func removeChild(p *Process) {
	children.Lock()
	delete(children.set, p)
	children.Unlock()
}

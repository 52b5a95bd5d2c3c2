//go:build linux

// Package leakcheck is the tests' check that nothing was left behind:
// goroutines, child processes (running or zombie), descriptors and shared
// memory. Each package's TestMain uses it:
//
//	func TestMain(m *testing.M) {
//		mp.Main()
//		base := leakcheck.Start()
//		code := m.Run()
//		if code == 0 { code = base.Report() }
//		os.Exit(code)
//	}
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"go.uber.org/goleak"
)

// Baseline is the state before the tests.
type Baseline struct {
	fds int
}

// Start prepares the process and records the descriptors open before the
// tests. It turns off the race detector's 1 s sleep at exit for the
// children the tests start, and opens the network poller, whose
// descriptors appear with the first Conn and stay.
func Start() Baseline {
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	if a, b, err := mp.Pipe(true); err == nil {
		a.Close()
		b.Close()
	}
	return Baseline{fds: countFDs()}
}

// Report checks for leaks, prints what it finds, and returns the exit code
// for it (0 or 1).
func (b Baseline) Report() int {
	if err := b.Check(); err != nil {
		fmt.Fprintln(os.Stderr, "leak check:", err)
		return 1
	}
	return 0
}

// Check waits up to 5 s for goroutines and mp's children to finish (mp
// reaps and closes in the background), then reports anything left.
// Descriptors are counted once, after that wait, so that one closed by a
// finalizer meanwhile cannot hide a leak; shared memory (memfd), which mp
// releases when its objects are garbage, is counted apart and must be gone
// after garbage collection.
func (b Baseline) Check() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := settled()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	if z := childrenOf(os.Getpid()); len(z) > 0 {
		return fmt.Errorf("child processes (or zombies) left: %v", z)
	}
	// mp keeps /dev/null open for children's stdin.
	if n := countFDs() - len(memfds()); n > b.fds+1 {
		return fmt.Errorf("%d descriptors open, %d at start: %v", n, b.fds, FDNames())
	}
	for i := 0; len(memfds()) > 0; i++ {
		if i == 100 {
			return fmt.Errorf("shared memory still mapped after GC: %v", memfds())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func settled() error {
	if err := goleak.Find(); err != nil {
		return err
	}
	if kids := mp.ActiveChildren(); len(kids) > 0 {
		return fmt.Errorf("%d children still running: %v", len(kids), kids)
	}
	return nil
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		panic(err)
	}
	return len(ents) - 1 // the directory being read
}

// FDNames lists this process's open descriptors as "fd=target".
func FDNames() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}

func memfds() []string {
	var out []string
	for _, n := range FDNames() {
		if strings.Contains(n, "/memfd:") {
			out = append(out, n)
		}
	}
	return out
}

// childrenOf lists "pid state" of every process whose parent is ppid.
func childrenOf(ppid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 > len(s) {
			continue
		}
		var state string
		var pp int
		fmt.Sscanf(s[i+2:], "%s %d", &state, &pp)
		if pp == ppid {
			out = append(out, e.Name()+" "+state)
		}
	}
	return out
}

// Main is a test package's TestMain: it runs the children the tests start
// (mp.Main), runs the tests, and fails the run when they pass but leave
// goroutines, children, zombies, descriptors or shared memory behind.
func Main(m *testing.M) {
	mp.Main()
	base := Start()
	code := m.Run()
	if code == 0 {
		code = base.Report()
	}
	os.Exit(code)
}

package mp_test

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

func TestMain(m *testing.M) {
	mp.Main()
	// Under -race a process sleeps 1 s at exit unless told otherwise; the
	// children started by the tests need not.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	// The network poller's descriptors appear with the first Conn.
	if a, b, err := mp.Pipe(true); err == nil {
		a.Close()
		b.Close()
	}
	baseFDs = countFDs()
	code := m.Run()
	if code == 0 {
		if err := checkNoLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkNoLeaks fails when a test left goroutines, children, zombies or
// descriptors behind.
func checkNoLeaks() error {
	// Reapers and closers run in the background: wait for them, but count
	// descriptors once only, after that, so that a descriptor closed by a
	// finalizer during the wait cannot hide a leak.
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
	// mp keeps /dev/null open for children's stdin. Shared memory
	// (memfd) is released when its objects are garbage: count it apart.
	if n := countFDs() - len(memfds()); n > baseFDs+1 {
		return fmt.Errorf("%d descriptors open, %d at start: %v", n, baseFDs, fdNames())
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

func memfds() []string {
	var out []string
	for _, n := range fdNames() {
		if strings.Contains(n, "/memfd:") {
			out = append(out, n)
		}
	}
	return out
}

var baseFDs int

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
		if i < 0 {
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

func fdNames() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}

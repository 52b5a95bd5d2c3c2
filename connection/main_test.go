package connection_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"go.uber.org/goleak"
)

var baseFDs int

// TestMain fails the run when the tests leave goroutines, descriptors or
// child processes (the python3 peers) behind.
func TestMain(m *testing.M) {
	mp.Main()
	baseFDs = countFDs()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		err := leaks()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			err = leaks()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func leaks() error {
	if err := goleak.Find(); err != nil {
		return err
	}
	// The network poller's descriptors (epoll and its wakeup pipe) open
	// with the first socket and stay.
	if n := countFDs(); n > baseFDs+2 {
		ents, _ := os.ReadDir("/proc/self/fd")
		var names []string
		for _, e := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + e.Name())
			names = append(names, e.Name()+"="+l)
		}
		return fmt.Errorf("%d descriptors open, %d at start: %v", n, baseFDs, names)
	}
	if kids := children(); len(kids) > 0 {
		return fmt.Errorf("child processes left: %v", kids)
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

// children lists the processes (zombies included) whose parent is this one.
func children() []string {
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
		var ppid int
		fmt.Sscanf(s[i+2:], "%s %d", &state, &ppid)
		if ppid == os.Getpid() {
			out = append(out, e.Name()+" "+state)
		}
	}
	return out
}

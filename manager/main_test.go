package manager_test

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

// TestMain runs the children the tests start (the test binary is
// re-executed for them, the manager's server among them) and fails the
// run when the tests leave goroutines, children, zombies or descriptors
// behind.
func TestMain(m *testing.M) {
	mp.Main()
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
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

func checkNoLeaks() error {
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
	if n := countFDs(); n > baseFDs+1 {
		return fmt.Errorf("%d descriptors open, %d at start: %v", n, baseFDs, fdNames())
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

func fdNames() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}

//go:build linux

package scenarios_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/examples/scenarios"
	"go.uber.org/goleak"
)

// TestMain runs the children the scenarios start (this test binary is
// re-executed for them) and checks that no goroutine is left at the end.
func TestMain(m *testing.M) {
	mp.Main()
	goleak.VerifyTestMain(m)
}

// TestScenariosInProcess runs each scenario inside the test binary, with
// the race detector when enabled, and checks that it leaves no child and no
// descriptor behind. The tour's test checks what they print.
func TestScenariosInProcess(t *testing.T) {
	// The network poller's descriptors appear with the first Conn.
	if a, b, err := mp.Pipe(true); err == nil {
		a.Close()
		b.Close()
	}
	for _, s := range scenarios.All {
		t.Run(s.Name, func(t *testing.T) {
			fds, mems := countFDs(t), memfds()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := s.Run(ctx, &out); err != nil {
				t.Fatalf("%v\noutput:\n%s", err, &out)
			}
			if out.Len() == 0 {
				t.Error("no output")
			}
			if kids := mp.ActiveChildren(); len(kids) > 0 {
				t.Errorf("children still running: %v", kids)
			}
			// mp opens /dev/null once, for children's stdin. Shared
			// objects (memfd) that have no Close, such as locks and
			// events, are released once they are garbage: count them
			// apart, and give the collector a while to release them.
			if n := countFDs(t) - memfds(); n > fds-mems+1 {
				t.Errorf("%d descriptors open after the scenario, %d before", n, fds-mems)
			}
			for i := 0; memfds() > mems; i++ {
				if i == 100 {
					t.Errorf("shared memory still mapped after GC: %d memfds, %d before", memfds(), mems)
					break
				}
				runtime.GC()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestScenarioNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range scenarios.All {
		if seen[s.Name] || s.Name == "" || s.Title == "" || s.Run == nil {
			t.Errorf("bad or duplicate scenario %+v", s)
		}
		seen[s.Name] = true
		if _, err := os.Stat(fmt.Sprintf("../%s/main.go", s.Name)); err != nil {
			t.Errorf("scenario %s has no command: %v", s.Name, err)
		}
	}
}

// memfds counts the descriptors of shared memory.
func memfds() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.Contains(l, "/memfd:") {
			n++
		}
	}
	return n
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents) - 1 // the directory being read
}

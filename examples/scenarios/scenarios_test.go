package scenarios_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
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
			fds := countFDs(t)
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
			// mp opens /dev/null once, for children's stdin.
			if n := countFDs(t); n > fds+1 {
				t.Errorf("%d descriptors open after the scenario, %d before", n, fds)
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

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents) - 1 // the directory being read
}

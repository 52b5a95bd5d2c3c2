//go:build linux

package bench

import (
	"testing"
	"time"

	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain runs the children of the tests (mp.Main) and fails the run
// when the tests leave goroutines, descriptors or child processes behind.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// pipe_rtt's clock starts once the child runs: a child that starts
// echoing late by 2 s, over 5 round trips, would make each take 400 ms
// if its start counted. The bound, 200 ms a round trip, is far above a
// round trip's microseconds on any machine, however loaded.
func TestPipeRTTExcludesStart(t *testing.T) {
	const late, n = 2 * time.Second, 5
	dt, err := pipeRTT(n, late)
	if err != nil {
		t.Fatal(err)
	}
	if dt >= late/n/2 {
		t.Fatalf("a round trip took %v on average: the child's late start counted (%v over %d round trips)", dt, late, n)
	}
}

// The floor's worker gives up with a failing status when it cannot reach
// the server, rather than trying for ever.
func TestFloorWorkerUnreachable(t *testing.T) {
	if code := FloorWorker("nats://127.0.0.1:1"); code == 0 {
		t.Fatal("FloorWorker succeeded with no server to reach")
	}
}

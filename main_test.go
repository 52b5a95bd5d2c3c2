//go:build linux

package mp_test

import (
	"os"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain runs the children the tests start (the test binary is
// re-executed for them) and fails the run when the tests leave
// goroutines, children, zombies, descriptors or shared memory behind.
func TestMain(m *testing.M) {
	mp.Main()
	base := leakcheck.Start()
	code := m.Run()
	if code == 0 {
		code = base.Report()
	}
	os.Exit(code)
}

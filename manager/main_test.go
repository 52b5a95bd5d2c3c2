//go:build linux

package manager_test

import (
	"os"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain runs the children the tests start (the test binary is
// re-executed for them, the manager's server among them) and fails the
// run when the tests leave goroutines, children, zombies or descriptors
// behind.
func TestMain(m *testing.M) {
	mp.Main()
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	base := leakcheck.Start()
	code := m.Run()
	if code == 0 {
		code = base.Report()
	}
	os.Exit(code)
}

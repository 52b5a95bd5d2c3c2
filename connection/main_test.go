//go:build linux

package connection_test

import (
	"os"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain fails the run when the tests leave goroutines, descriptors or
// child processes (the python3 peers) behind.
func TestMain(m *testing.M) {
	mp.Main()
	base := leakcheck.Start()
	code := m.Run()
	if code == 0 {
		code = base.Report()
	}
	os.Exit(code)
}

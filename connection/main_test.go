//go:build linux

package connection_test

import (
	"testing"

	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain fails the run when the tests leave goroutines, descriptors or
// child processes (the python3 peers) behind.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

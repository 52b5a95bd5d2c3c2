//go:build linux

package mp_test

import (
	"testing"

	"github.com/go-mp/mp/internal/leakcheck"
)

// TestMain runs the children the tests start (the test binary is
// re-executed for them) and fails the run when the tests leave
// goroutines, children, zombies, descriptors or shared memory behind.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

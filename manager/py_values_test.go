//go:build linux

package manager

import (
	"math"
	"testing"

	ogórek "github.com/kisielk/og-rek"
)

// TestPythonRangeBounds: a range a client sends is expanded exactly, also
// at the ends of int64, and refused past maxRange items or with step 0.
func TestPythonRangeBounds(t *testing.T) {
	for _, c := range []struct {
		a    ogórek.Tuple
		n    int
		fail bool
	}{
		{ogórek.Tuple{int64(0), int64(10), int64(3)}, 4, false},
		{ogórek.Tuple{int64(10), int64(0), int64(-3)}, 4, false},
		{ogórek.Tuple{int64(0), int64(0), int64(1)}, 0, false},
		{ogórek.Tuple{int64(math.MinInt64), int64(math.MaxInt64), int64(1 << 62)}, 4, false},
		{ogórek.Tuple{int64(math.MinInt64), int64(math.MaxInt64), int64(1)}, 0, true},
		{ogórek.Tuple{int64(0), int64(10), int64(0)}, 0, true},
	} {
		items, err := pyRange(c.a)
		if (err != nil) != c.fail || len(items) != c.n {
			t.Errorf("%v: %d items, %v", c.a, len(items), err)
		}
	}
}

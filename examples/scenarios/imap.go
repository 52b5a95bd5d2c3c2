//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-mp/mp"
)

// imapItems is how many items the imap scenario maps; item i sleeps the
// longer the smaller i is, so that the first items finish last.
const imapItems = 8

var slowSquare = mp.Register("scenarios.slowSquare", func(i int) (int, error) {
	time.Sleep(time.Duration(imapItems-i) * 30 * time.Millisecond)
	return i * i, nil
})

// Imap compares Python's imap and imap_unordered on items that finish in
// about the reverse of their order. Imap yields the results in the order of
// the items, holding back those that finish early; ImapUnordered yields
// each as it finishes, so its order depends on timing (here, item 0, the
// slowest, cannot come first):
//
//	imap:           0 1 4 9 16 25 36 49
//	imap_unordered: 9 4 1 49 36 0 25 16
//	imap_unordered gave the same results in another order: true
func Imap(ctx context.Context, w io.Writer) error {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 4})
	if err != nil {
		return err
	}
	defer stopPool(pool)
	items := func(yield func(int) bool) {
		for i := range imapItems {
			if !yield(i) {
				return
			}
		}
	}

	var ordered, unordered []int
	for v, err := range slowSquare.Imap(ctx, pool, items, 1) {
		if err != nil {
			return err
		}
		ordered = append(ordered, v)
	}
	for v, err := range slowSquare.ImapUnordered(ctx, pool, items, 1) {
		if err != nil {
			return err
		}
		unordered = append(unordered, v)
	}
	fmt.Fprintln(w, "imap:          ", join(ordered))
	fmt.Fprintln(w, "imap_unordered:", join(unordered))
	sorted := slices.Sorted(slices.Values(unordered))
	fmt.Fprintln(w, "imap_unordered gave the same results in another order:",
		slices.Equal(sorted, ordered) && !slices.Equal(unordered, ordered))
	return closeAndJoin(ctx, pool)
}

func join(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, " ")
}

//go:build linux

package mp_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

// ownTerminated doubles an item, but fails -1 with an error that wraps
// mp.ErrPoolTerminated and -2 with mp.ErrPoolTerminated itself: a
// target's own error, in a pool that is not terminated.
var ownTerminated = mp.Register("test.imapstopmore.ownTerminated", func(x int) (int, error) {
	switch x {
	case -1:
		return 0, fmt.Errorf("the target's own: %w", mp.ErrPoolTerminated)
	case -2:
		return 0, mp.ErrPoolTerminated
	}
	return 2 * x, nil
})

// A target that returns ErrPoolTerminated (wrapped or not) in a pool
// that runs fails its chunk as any error does: every item of the chunk
// yields it, and the loop goes on with the next chunks. Only the pool's
// own stop (see TestImapTerminateYieldsOnce) yields it once and ends the
// loop.
func TestImapTargetPoolTerminatedYieldsPerItem(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	items := []int{1, 2, 3, 4, -1, 5, 6, 7, 8, -2, 9, 10, 11, 12, 13}
	for _, o := range []struct {
		name string
		imap imapFunc[int, int]
	}{{"Imap", ownTerminated.Imap}, {"ImapUnordered", ownTerminated.ImapUnordered}} {
		for _, c := range []struct {
			n    int
			want []int // -1: an error matching mp.ErrPoolTerminated
		}{
			{1, []int{2, 4, 6, 8, -1, 10, 12, 14, 16, -1, 18, 20, 22, 24, 26}},
			{3, []int{2, 4, 6, -1, -1, -1, 12, 14, 16, -1, -1, -1, 22, 24, 26}},
		} {
			checkOwnErrors(t, o.name, o.imap(ctx, pool, slices.Values(items), c.n), c.n, mp.ErrPoolTerminated, c.want)
		}
	}
}

// gatedStep marks that it started (see poolStep), then waits (a minute
// at most) until the file Dir/go exists.
var gatedStep = mp.Register("test.imapstopmore.gatedStep", func(s poolStep) (string, error) {
	s.mark("started")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if exists(s.Dir, "go") {
			break
		}
	}
	return "done " + s.ID, nil
})

// A pool whose worker retires after its first chunk and cannot be
// replaced (this process may open no descriptor then) breaks with that
// error: the loop yields the first chunk's results, then the error once,
// and ends (once per item of the chunks queued, on the old code).
func TestImapWorkerStartFailYieldsOnce(t *testing.T) {
	for _, o := range []struct {
		name string
		imap imapFunc[poolStep, string]
	}{{"Imap", gatedStep.Imap}, {"ImapUnordered", gatedStep.ImapUnordered}} {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/chunksize%d", o.name, n), func(t *testing.T) {
				dir := t.TempDir()
				// Made before the descriptors run out: a rename opens none.
				if err := os.WriteFile(filepath.Join(dir, "go.tmp"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				pool := newPool(t, mp.PoolOptions{Processes: 1, MaxTasksPerChild: 1})
				bound := ctxTimeout(t, 30*time.Second)
				// Three chunks: the window (four) holds them all.
				var steps []poolStep
				for i := range 3 * n {
					steps = append(steps, poolStep{Dir: dir, ID: fmt.Sprint(i)})
				}
				var restoreOnce sync.Once
				var old unix.Rlimit
				lowered := false
				restore := func() {
					restoreOnce.Do(func() {
						if lowered {
							if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &old, nil); err != nil {
								t.Errorf("restore RLIMIT_NOFILE: %v", err)
							}
						}
					})
				}
				t.Cleanup(restore)
				// Once the loop has submitted the three chunks and the
				// first runs, this process may open no descriptor (0 to 2
				// are taken): the worker's replacement cannot start. The
				// first chunk then ends. prlimit, not setrlimit, so that
				// the runtime's own record of the limit stays as it is.
				seq := func(yield func(poolStep) bool) {
					for _, s := range steps {
						if !yield(s) {
							return
						}
					}
					// The first chunk goes on in any case.
					defer func() {
						if err := os.Rename(filepath.Join(dir, "go.tmp"), filepath.Join(dir, "go")); err != nil {
							t.Error(err)
						}
					}()
					if err := awaitFileErr(bound, dir, "started-0"); err != nil {
						t.Error(err)
						return
					}
					if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &old); err != nil {
						t.Error(err)
						return
					}
					low := unix.Rlimit{Cur: 3, Max: old.Max}
					if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &low, nil); err != nil {
						t.Error(err)
						return
					}
					lowered = true
				}
				var got []yielded
				for v, err := range o.imap(bound, pool, seq, n) {
					got = append(got, yielded{v, err})
					if err != nil {
						restore()
					}
					if len(got) > 3*n+1 {
						break
					}
				}
				restore()
				ok := len(got) == n+1
				for i := 0; ok && i < n; i++ {
					ok = got[i] == yielded{fmt.Sprint("done ", i), nil}
				}
				if ok {
					err := got[n].err
					ok = err != nil && errors.Is(err, syscall.EMFILE) && strings.Contains(err.Error(), "cannot replace a pool worker")
				}
				if !ok {
					t.Fatalf("the loop saw %v, want the first chunk's %d results, then the pool's error (a worker that cannot be replaced: EMFILE) once", got, n)
				}
			})
		}
	}
}

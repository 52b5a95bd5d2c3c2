//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// stdErr returns, wrapped, the standard library error it is named: the
// sentinels mp registers by default. "notexist" is a real *fs.PathError
// from opening a missing file, which matches os.ErrNotExist through
// syscall.ENOENT's Is method.
var stdErr = mp.Register("test.stdErr", func(name string) (int, error) {
	switch name {
	case "canceled":
		return 0, fmt.Errorf("in child: %w", context.Canceled)
	case "deadline":
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		<-ctx.Done()
		return 0, fmt.Errorf("in child: %w", ctx.Err())
	case "eof":
		return 0, fmt.Errorf("in child: %w", io.EOF)
	case "notexist":
		_, err := os.Open(filepath.Join(os.TempDir(), "mp-test-no-such-file"))
		return 0, fmt.Errorf("in child: %w", err)
	}
	return 0, errors.New("in child: unknown case " + name)
})

// TestDefaultErrorsCross makes a child return context.Canceled,
// context.DeadlineExceeded, io.EOF and os.ErrNotExist, wrapped, through a
// Process and a Pool: each matches in the parent with errors.Is, as the
// mp sentinels do, and only it does among them.
func TestDefaultErrorsCross(t *testing.T) {
	cases := map[string]error{
		"canceled": context.Canceled,
		"deadline": context.DeadlineExceeded,
		"eof":      io.EOF,
		"notexist": os.ErrNotExist,
	}
	check := func(how, arg string, err error) {
		t.Helper()
		var re *mp.RemoteError
		if !errors.As(err, &re) {
			t.Errorf("%s %s: %v, want a *RemoteError", how, arg, err)
			return
		}
		for name, want := range cases {
			if got := errors.Is(err, want); got != (name == arg) {
				t.Errorf("%s %s: errors.Is(%v, %v) = %v (sentinels %q)", how, arg, err, want, got, re.Sentinels)
			}
		}
	}
	ctx := ctxTimeout(t, 60*time.Second)
	procs := map[string]*mp.Process{}
	for arg := range cases {
		procs[arg] = start(t, mp.NewProcess(stdErr, arg))
	}
	for arg, p := range procs {
		check("Join", arg, p.Join(ctx))
	}
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	for arg := range cases {
		_, err := stdErr.Apply(ctx, pool, arg)
		check("Apply", arg, err)
	}
}

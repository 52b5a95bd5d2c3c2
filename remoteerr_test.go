//go:build linux

package mp_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// mpSentinels lists every exported sentinel error of mp, written out here
// independently of mp's own table; TestSentinelListComplete keeps it
// complete.
var mpSentinels = map[string]error{
	"ErrClosed":               mp.ErrClosed,
	"ErrNotReadable":          mp.ErrNotReadable,
	"ErrNotWritable":          mp.ErrNotWritable,
	"ErrBufferTooShort":       mp.ErrBufferTooShort,
	"ErrMessageTooLong":       mp.ErrMessageTooLong,
	"ErrAuthentication":       mp.ErrAuthentication,
	"ErrDaemonChildren":       mp.ErrDaemonChildren,
	"ErrNotStarted":           mp.ErrNotStarted,
	"ErrAlreadyStarted":       mp.ErrAlreadyStarted,
	"ErrStillRunning":         mp.ErrStillRunning,
	"ErrOwnerDied":            mp.ErrOwnerDied,
	"ErrNotHeld":              mp.ErrNotHeld,
	"ErrUnknownTarget":        mp.ErrUnknownTarget,
	"ErrBrokenBarrier":        mp.ErrBrokenBarrier,
	"ErrTooManyWaiters":       mp.ErrTooManyWaiters,
	"ErrCancelled":            mp.ErrCancelled,
	"ErrExecutorShutdown":     mp.ErrExecutorShutdown,
	"ErrInvalidChunksize":     mp.ErrInvalidChunksize,
	"ErrUnsupportedType":      mp.ErrUnsupportedType,
	"ErrPoolClosed":           mp.ErrPoolClosed,
	"ErrPoolTerminated":       mp.ErrPoolTerminated,
	"ErrWorkerLost":           mp.ErrWorkerLost,
	"ErrTaskTimeout":          mp.ErrTaskTimeout,
	"ErrEmpty":                mp.ErrEmpty,
	"ErrFull":                 mp.ErrFull,
	"ErrQueueHandles":         mp.ErrQueueHandles,
	"ErrTaskDone":             mp.ErrTaskDone,
	"ErrItemTooLarge":         mp.ErrItemTooLarge,
	"ErrReleasedTooManyTimes": mp.ErrReleasedTooManyTimes,
	"ErrTypeMismatch":         mp.ErrTypeMismatch,
	"ErrIndexOutOfRange":      mp.ErrIndexOutOfRange,
	"ErrInvalidSize":          mp.ErrInvalidSize,
}

// raise returns the sentinel it is named, wrapped twice; "ownerDied" and
// "bufferTooShort" return the typed errors that match a sentinel, and
// "panic:" followed by a name panics with the wrapped sentinel.
var raise = mp.Register("test.raise", func(name string) (int, error) {
	switch name {
	case "ownerDied":
		return 0, fmt.Errorf("in child: %w", &mp.OwnerDiedError{Pid: 1})
	case "bufferTooShort":
		return 0, fmt.Errorf("in child: %w", &mp.BufferTooShortError{Message: []byte("x")})
	}
	if n, ok := strings.CutPrefix(name, "panic:"); ok {
		panic(fmt.Errorf("in child: %w", mpSentinels[n]))
	}
	return 0, fmt.Errorf("in child: %w", fmt.Errorf("again: %w", mpSentinels[name]))
})

// raiseCases returns the argument for raise and the sentinel the error
// must match (and no other), for every case.
func raiseCases() map[string]error {
	cases := map[string]error{
		"ownerDied":      mp.ErrOwnerDied,
		"bufferTooShort": mp.ErrBufferTooShort,
		"panic:ErrEmpty": mp.ErrEmpty,
	}
	for name, err := range mpSentinels {
		cases[name] = err
	}
	return cases
}

// checkRemote checks that err is the child's *RemoteError for the case
// arg and matches exactly the sentinel want.
func checkRemote(t *testing.T, how, arg string, err, want error) {
	t.Helper()
	var re *mp.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "in child: ") {
		t.Errorf("%s %s: %v, want the child's *RemoteError", how, arg, err)
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s %s: %v (sentinels %q) does not match %v", how, arg, err, re.Sentinels, want)
	}
	for name, other := range mpSentinels {
		if other != want && errors.Is(err, other) {
			t.Errorf("%s %s: %v also matches %s", how, arg, err, name)
		}
	}
	// *OwnerDiedError is registered by default: it is rebuilt.
	var od *mp.OwnerDiedError
	if got := errors.As(err, &od); got != (arg == "ownerDied") || (got && od.Pid != 1) {
		t.Errorf("%s %s: errors.As(%v, *OwnerDiedError) = %v, %+v", how, arg, err, got, od)
	}
}

// TestChildSentinelsMatch makes a child return (or panic with) each mp
// sentinel wrapped with %w, through a Process and through a Pool: each
// matches in the parent with errors.Is, and only it does.
func TestChildSentinelsMatch(t *testing.T) {
	cases := raiseCases()
	ctx := ctxTimeout(t, 60*time.Second)
	procs := map[string]*mp.Process{}
	for arg := range cases {
		procs[arg] = start(t, mp.NewProcess(raise, arg))
	}
	for arg, p := range procs {
		checkRemote(t, "Join", arg, p.Join(ctx), cases[arg])
	}
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	for arg, want := range cases {
		_, err := raise.Apply(ctx, pool, arg)
		checkRemote(t, "Apply", arg, err, want)
	}
}

// late is registered when a test first calls it, never in a child: a
// child asked to run it does not know it.
var late = sync.OnceValue(func() *mp.Func[int, int] {
	return mp.Register("test.late", func(x int) (int, error) { return x, nil })
})

// TestUnknownTargetInChild runs a target the child does not have: Join and
// Apply report an error matching ErrUnknownTarget, as documented.
func TestUnknownTargetInChild(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := start(t, mp.NewProcess(late(), 1))
	err := p.Join(ctx)
	var re *mp.RemoteError
	if !errors.Is(err, mp.ErrUnknownTarget) || !errors.As(err, &re) || !strings.Contains(re.Message, "test.late") {
		t.Errorf("Join of a target unknown to the child = %v, want a *RemoteError matching ErrUnknownTarget", err)
	}
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	_, err = late().Apply(ctx, pool, 1)
	if !errors.Is(err, mp.ErrUnknownTarget) || !errors.As(err, &re) || !strings.Contains(re.Message, "test.late") {
		t.Errorf("Apply of a target unknown to the worker = %v, want a *RemoteError matching ErrUnknownTarget", err)
	}
	if v, err := double.Apply(ctx, pool, 2); err != nil || v != 4 {
		t.Errorf("the pool after an unknown target: Apply = %d, %v", v, err)
	}
}

// TestSentinelListComplete reads mp's sources: every exported ErrX
// variable is in mpSentinels, so that TestChildSentinelsMatch covers it.
func TestSentinelListComplete(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var missing []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					if _, ok := mpSentinels[n.Name]; strings.HasPrefix(n.Name, "Err") && !ok {
						missing = append(missing, n.Name)
					}
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("sentinels not covered (add them to mp's table in errors.go and to mpSentinels): %v", missing)
	}
}

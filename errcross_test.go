//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// The errors a target returns in TestRegisteredErrorsCross: a sentinel, a
// typed error used through a pointer, one used as a value, all registered
// at package level so that the children (the test binary re-executed)
// register them too.
var errNotFound = errors.New("test: not found")

// quotaError is used as *quotaError. Err, an interface field, arrives nil;
// hidden, unexported, arrives zero.
type quotaError struct {
	User   string
	Limit  int
	Err    error
	hidden int
}

func (e *quotaError) Error() string { return fmt.Sprintf("quota of %s over %d", e.User, e.Limit) }
func (e *quotaError) Unwrap() error { return e.Err }

// codeError is used as a value.
type codeError struct{ Code int }

func (e codeError) Error() string { return fmt.Sprintf("code %d", e.Code) }

// errChildOnly is registered in children only: the parent does not know
// its name.
var errChildOnly = errors.New("test: known to children only")

func init() {
	mp.RegisterError("mp_test.errNotFound", errNotFound)
	mp.RegisterErrorType[*quotaError]()
	mp.RegisterErrorType[codeError]()
	if os.Getenv("MP_CHILD_FD") != "" { // (mp.Main has not run yet)
		mp.RegisterError("mp_test.errChildOnly", errChildOnly)
	}
}

// failWith returns (or panics with) the error its argument names.
var failWith = mp.Register("test.failWith", func(how string) (int, error) {
	quota := &quotaError{User: "ann", Limit: 3, Err: io.EOF, hidden: 7}
	switch how {
	case "sentinel":
		return 0, fmt.Errorf("a: %w", fmt.Errorf("b: %w", errNotFound))
	case "pointer":
		return 0, fmt.Errorf("a: %w", fmt.Errorf("b: %w", quota))
	case "value":
		return 0, fmt.Errorf("a: %w", fmt.Errorf("b: %w", codeError{Code: 42}))
	case "join":
		return 0, errors.Join(errors.New("other"), fmt.Errorf("w: %w", errNotFound), quota)
	case "multi":
		return 0, fmt.Errorf("%w and %w", codeError{Code: 42}, fmt.Errorf("b: %w", errNotFound))
	case "panic":
		panic(fmt.Errorf("a: %w", quota))
	case "childOnly":
		return 0, fmt.Errorf("a: %w", errChildOnly)
	case "plain":
		return 0, fmt.Errorf("plain: %w", errors.New("unregistered"))
	}
	return 0, nil
})

// crossCases maps each argument of failWith to what the parent must see:
// the sentinel matched, the *quotaError, the codeError.
var crossCases = map[string]struct {
	notFound bool
	quota    bool
	code     bool
}{
	"sentinel": {notFound: true},
	"pointer":  {quota: true},
	"value":    {code: true},
	"join":     {notFound: true, quota: true},
	"multi":    {notFound: true, code: true},
	"panic":    {quota: true},
}

// checkCross checks err, the parent's error for failWith(arg).
func checkCross(t *testing.T, how, arg string, err error) {
	t.Helper()
	want := crossCases[arg]
	var re *mp.RemoteError
	if !errors.As(err, &re) {
		t.Errorf("%s %s: %v, want a *RemoteError", how, arg, err)
		return
	}
	if re.Panic != (arg == "panic") || re.Stack == "" {
		t.Errorf("%s %s: Panic %v, stack %q", how, arg, re.Panic, re.Stack)
	}
	if got := errors.Is(err, errNotFound); got != want.notFound {
		t.Errorf("%s %s: errors.Is(%v, errNotFound) = %v", how, arg, err, got)
	}
	var q *quotaError
	if got := errors.As(err, &q); got != want.quota {
		t.Errorf("%s %s: errors.As(%v, *quotaError) = %v (values %v)", how, arg, err, got, re.Values)
	} else if got && *q != (quotaError{User: "ann", Limit: 3}) {
		t.Errorf("%s %s: the *quotaError arrived as %+v, want its exported fields, Err nil", how, arg, *q)
	}
	if want.quota && !errors.Is(err, io.EOF) {
		t.Errorf("%s %s: the io.EOF the *quotaError wrapped does not match", how, arg)
	}
	var c codeError
	if got := errors.As(err, &c); got != want.code || (got && c.Code != 42) {
		t.Errorf("%s %s: errors.As(%v, codeError) = %v, %+v", how, arg, err, got, c)
	}
}

// TestRegisteredErrorsCross makes a child's target return a registered
// sentinel and registered typed errors (pointer and value), wrapped twice
// with %w, with errors.Join and with several %w, or panic with one,
// through a Process, a pool's Apply and an Executor's Submit: in the
// parent, errors.Is and errors.As find each as they did in the child.
func TestRegisteredErrorsCross(t *testing.T) {
	ctx := ctxTimeout(t, 60*time.Second)
	procs := map[string]*mp.Process{}
	for arg := range crossCases {
		procs[arg] = start(t, mp.NewProcess(failWith, arg))
	}
	for arg, p := range procs {
		checkCross(t, "Join", arg, p.Join(ctx))
	}
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	for arg := range crossCases {
		_, err := failWith.Apply(ctx, pool, arg)
		checkCross(t, "Apply", arg, err)
	}
	ex := newExecutor(t, mp.PoolOptions{Processes: 1})
	for arg := range crossCases {
		checkCross(t, "Submit", arg, failWith.Submit(ctx, ex, arg).Err(ctx))
	}
}

// TestUnregisteredErrorCrosses checks what does not cross: an error
// registered nowhere keeps its message and the stack, and matches
// nothing; one registered in the child only (a name the parent does not
// know) keeps its message and unwraps to nothing.
func TestUnregisteredErrorCrosses(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	for _, arg := range []string{"plain", "childOnly"} {
		p := start(t, mp.NewProcess(failWith, arg))
		_, aerr := failWith.Apply(ctx, pool, arg)
		for how, err := range map[string]error{"Join": p.Join(ctx), "Apply": aerr} {
			var re *mp.RemoteError
			if !errors.As(err, &re) {
				t.Errorf("%s %s: %v, want a *RemoteError", how, arg, err)
				continue
			}
			wantMsg := map[string]string{"plain": "plain: unregistered", "childOnly": "a: test: known to children only"}[arg]
			if re.Message != wantMsg || !strings.Contains(re.Stack, "goroutine") {
				t.Errorf("%s %s: message %q, stack %q", how, arg, re.Message, re.Stack)
			}
			if u := re.Unwrap(); len(u) != 0 || errors.Is(err, errChildOnly) {
				t.Errorf("%s %s: unwraps to %v", how, arg, u)
			}
			if arg == "childOnly" && (len(re.Sentinels) != 1 || re.Sentinels[0] != "mp_test.errChildOnly") {
				t.Errorf("%s %s: the child sent sentinels %q", how, arg, re.Sentinels)
			}
		}
	}
}

// sliceError is not comparable.
type sliceError struct{ s []int }

func (sliceError) Error() string { return "slice" }

// TestRegisterErrorMistakes checks the documented panics.
func TestRegisterErrorMistakes(t *testing.T) {
	for name, f := range map[string]func(){
		"nil error":        func() { mp.RegisterError("mp_test.nil", nil) },
		"empty name":       func() { mp.RegisterError("", errors.New("x")) },
		"name twice":       func() { mp.RegisterError("mp_test.errNotFound", errors.New("x")) },
		"error twice":      func() { mp.RegisterError("mp_test.again", errNotFound) },
		"default twice":    func() { mp.RegisterError("mp_test.eof", io.EOF) },
		"not comparable":   func() { mp.RegisterError("mp_test.slice", sliceError{}) },
		"type twice":       func() { mp.RegisterErrorType[*quotaError]() },
		"interface type":   func() { mp.RegisterErrorType[error]() },
		"name of a type":   func() { mp.RegisterError("*github.com/go-mp/mp_test.quotaError", errors.New("x")) },
		"mp sentinel name": func() { mp.RegisterError("mp.ErrClosed", errors.New("x")) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	_ = context.Canceled
}

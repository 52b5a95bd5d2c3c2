//go:build linux

package manager_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

// limitError is a typed error registered with mp, which a method of a
// registered type returns on the manager.
type limitError struct{ Max int }

func (e *limitError) Error() string { return fmt.Sprintf("over the limit of %d", e.Max) }

func init() { mp.RegisterErrorType[*limitError]() }

// failer's methods fail as they are told.
type failer struct{}

// Fail returns the error named by how, wrapped.
func (failer) Fail(how string) error {
	switch how {
	case "sentinel":
		return fmt.Errorf("a: %w", fmt.Errorf("b: %w", mp.ErrEmpty))
	case "typed":
		return fmt.Errorf("a: %w", &limitError{Max: 9})
	case "join":
		return errors.Join(io.EOF, &limitError{Max: 9})
	}
	return errors.New("plain")
}

// Crash panics with a wrapped registered error.
func (failer) Crash() { panic(fmt.Errorf("a: %w", &limitError{Max: 9})) }

var failerType = manager.RegisterType("manager_test.failer", func(struct{}) (*failer, error) { return &failer{}, nil })

// TestMethodErrorsCross calls methods of an object on the manager that
// return (or panic with) registered errors: errors.Is and errors.As match
// them in the client as they did on the manager; an unregistered error
// keeps its message and matches nothing.
func TestMethodErrorsCross(t *testing.T) {
	ctx := testCtx(t)
	m := start(t)
	f := must[*manager.Proxy[failer]](t)(failerType.New(ctx, m, struct{}{}))
	for _, c := range []struct {
		how     string
		empty   bool
		eof     bool
		limited bool
	}{
		{how: "sentinel", empty: true},
		{how: "typed", limited: true},
		{how: "join", eof: true, limited: true},
		{how: "plain"},
		{how: "crash", limited: true},
	} {
		var err error
		if c.how == "crash" {
			err = f.Call(ctx, "Crash", nil)
		} else {
			err = f.Call(ctx, "Fail", []any{c.how})
		}
		var re *mp.RemoteError
		if !errors.As(err, &re) || re.Pid != m.ServerPid() || re.Panic != (c.how == "crash") {
			t.Errorf("%s: %#v, want the manager's *mp.RemoteError", c.how, err)
			continue
		}
		var le *limitError
		if errors.Is(err, mp.ErrEmpty) != c.empty || errors.Is(err, io.EOF) != c.eof ||
			errors.As(err, &le) != c.limited || (c.limited && le.Max != 9) {
			t.Errorf("%s: %v: Is ErrEmpty %v, Is EOF %v, As *limitError %v %+v", c.how, err,
				errors.Is(err, mp.ErrEmpty), errors.Is(err, io.EOF), errors.As(err, &le), le)
		}
	}
}

//go:build linux

package manager

import (
	"context"
	"testing"
	"time"
)

// named is a registered type for TestNamedInstanceReleasedAsItIsNamed.
type named struct{ v int }

func (n *named) Get() int { return n.v }

var namedType = RegisterType("manager.named", func(v int) (*named, error) { return &named{v}, nil })

// A named instance of a registered type is released by another
// connection of its session (as a proxy of it closed there) right as
// create has served it: the server serves on, and the instance lives
// under its name. The release is made to happen at that point, by a hook.
// Before, the name was registered after serveInstance had let go of the
// server's lock, and the object, freed meanwhile, was nil: the server
// crashed ("invalid memory address or nil pointer dereference").
func TestNamedInstanceReleasedAsItIsNamed(t *testing.T) {
	m := serveHere(t, &Server{}, "unix")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	released := make(chan struct{}, 1)
	release := func(s *Server, sess *session, id uint64) {
		s.sessionUnref(sess, id)
		released <- struct{}{}
	}
	testHookInstanceServed.Store(&release)
	_, err := namedType.New(ctx, m, 7, Named("n"))
	testHookInstanceServed.Store(nil)
	select {
	case <-released:
	default:
		t.Fatalf("the hook did not run (New: %v)", err)
	}
	// Its name holds it: another client finds it, the server alive.
	other := connectHere(t, "unix", m.c.address)
	p, err := namedType.New(ctx, other, 8, Named("n"))
	if err != nil {
		t.Fatalf("the named instance after its release by the session: %v", err)
	}
	if v, err := Call[int](ctx, p, "Get"); err != nil || v != 7 {
		t.Fatalf("Get on the named instance: %d, %v; want 7, the first one's", v, err)
	}
}

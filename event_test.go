//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type eventArgs struct {
	Ev, Other *mp.Event
	Out       *mp.Conn
	// Then: "wait" reports its pid, waits for Ev, reports "set"; "echo"
	// waits for Ev, clears it and sets Other, Rounds times.
	Then   string
	Rounds int
}

var eventChild = mp.RegisterProc("test.event.child", func(a eventArgs) error {
	if a.Out != nil {
		defer a.Out.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch a.Then {
	case "wait":
		if err := a.Out.Send(os.Getpid()); err != nil {
			return err
		}
		if err := a.Ev.Wait(ctx); err != nil {
			return err
		}
		return a.Out.Send(-1)
	case "echo":
		for range a.Rounds {
			if err := a.Ev.Wait(ctx); err != nil {
				return err
			}
			a.Ev.Clear()
			a.Other.Set()
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", a.Then)
})

func mkEvent(t *testing.T) *mp.Event {
	t.Helper()
	e, err := mp.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEventBasics(t *testing.T) {
	e := mkEvent(t)
	if e.IsSet() {
		t.Fatal("new Event set")
	}
	if err := e.Wait(ctxTimeout(t, 20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a clear Event = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := e.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait = %v", err)
	}
	if err := e.Set(); err != nil || !e.IsSet() {
		t.Fatalf("Set = %v, IsSet %v", err, e.IsSet())
	}
	e.Set() // twice is fine
	// A set Event returns at once, even to a done ctx.
	if err := e.Wait(ctx); err != nil {
		t.Fatalf("Wait on a set Event = %v", err)
	}
	if err := e.Clear(); err != nil || e.IsSet() {
		t.Fatalf("Clear = %v, IsSet %v", err, e.IsSet())
	}
	// Set wakes every sleeper.
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() { errs <- e.Wait(ctxTimeout(t, 10*time.Second)) }()
	}
	time.Sleep(20 * time.Millisecond)
	e.Set()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var zero mp.Event
	if zero.Set() != mp.ErrClosed || zero.Clear() != mp.ErrClosed || zero.Wait(context.Background()) != mp.ErrClosed || zero.IsSet() {
		t.Fatal("zero Event usable")
	}
	if _, err := zero.MarshalCBOR(); err != mp.ErrClosed {
		t.Fatalf("MarshalCBOR of a zero Event = %v", err)
	}
}

// A waiter woken by Set returns even if the flag is cleared at once (as
// with Python's threading.Event).
func TestEventSetThenClearWakes(t *testing.T) {
	e := mkEvent(t)
	got := make(chan error, 1)
	go func() { got <- e.Wait(ctxTimeout(t, 20*time.Second)) }()
	// The waiter may not have started: repeat until it returns.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("Wait = %v", err)
			}
			if e.IsSet() {
				t.Fatal("flag set")
			}
			return
		case <-tick.C:
			e.Set()
			e.Clear()
		}
	}
}

func TestEventAcrossProcesses(t *testing.T) {
	e := mkEvent(t)
	var conns []*mp.Conn
	for range 3 {
		a, b := pipe(t, true)
		start(t, mp.NewProcess(eventChild, eventArgs{Ev: e, Out: b, Then: "wait"}))
		b.Close()
		conns = append(conns, a)
	}
	for _, c := range conns {
		var pid int
		if err := c.Recv(&pid); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	e.Set()
	for _, c := range conns {
		var v int
		if err := c.Recv(&v); err != nil || v != -1 {
			t.Fatalf("child after Set: %d, %v", v, err)
		}
	}
	// Hand the flag back and forth.
	other := mkEvent(t)
	e.Clear()
	const rounds = 200
	p := start(t, mp.NewProcess(eventChild, eventArgs{Ev: e, Other: other, Then: "echo", Rounds: rounds}))
	ctx := ctxTimeout(t, 30*time.Second)
	for i := range rounds {
		e.Set()
		if err := other.Wait(ctx); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		other.Clear()
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
}

// A waiter that dies asleep does not stop Set from waking the others.
func TestEventSleeperKilled(t *testing.T) {
	e := mkEvent(t)
	a, b := pipe(t, true)
	p := start(t, mp.NewProcess(eventChild, eventArgs{Ev: e, Out: b, Then: "wait"}))
	b.Close()
	var pid int
	if err := a.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	p.Kill()
	p.Join(context.Background())
	got := make(chan error)
	go func() { got <- e.Wait(ctxTimeout(t, 10*time.Second)) }()
	time.Sleep(20 * time.Millisecond)
	e.Set()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

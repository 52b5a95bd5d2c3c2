//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-mp/mp"
)

type eventArgs struct {
	Index int
	Event *mp.Event
	Out   *mp.Conn
}

// eventWaiter says it is about to wait, waits for the event, and says it
// woke up.
var eventWaiter = mp.RegisterProc("scenarios.eventWaiter", func(a eventArgs) error {
	defer a.Out.Close()
	if err := a.Out.Send(fmt.Sprintf("waiter %d waits for the event", a.Index)); err != nil {
		return err
	}
	if err := a.Event.Wait(context.Background()); err != nil {
		return err
	}
	return a.Out.Send(fmt.Sprintf("waiter %d woke up: event set = %v", a.Index, a.Event.IsSet()))
})

// EventSignal starts three waiters on one Event. None wakes until the
// parent sets it; then all do:
//
//	waiter 0 waits for the event
//	waiter 1 waits for the event
//	waiter 2 waits for the event
//	no waiter woke in 50ms: the event is not set
//	parent sets the event
//	waiter 0 woke up: event set = true
//	waiter 1 woke up: event set = true
//	waiter 2 woke up: event set = true
func EventSignal(ctx context.Context, w io.Writer) error {
	const waiters = 3
	ev, err := mp.NewEvent()
	if err != nil {
		return err
	}
	ps := make([]*mp.Process, waiters)
	reports := make([]*mp.Conn, waiters)
	for i := range waiters {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewProcess(eventWaiter, eventArgs{Index: i, Event: ev, Out: out})
		err = p.Start()
		out.Close()
		if err != nil {
			return err
		}
		defer cleanup(p)
		ps[i], reports[i] = p, r
	}
	recvLine := func(i int) error {
		var line string
		if err := reports[i].Recv(&line); err != nil {
			return fmt.Errorf("report of waiter %d: %w", i, err)
		}
		fmt.Fprintln(w, line)
		return nil
	}
	for i := range waiters {
		if err := recvLine(i); err != nil {
			return err
		}
	}
	time.Sleep(50 * time.Millisecond)
	for i, r := range reports {
		if ready, err := r.Poll(0); err != nil || ready {
			return fmt.Errorf("waiter %d reported before the event was set (ready %v, %v)", i, ready, err)
		}
	}
	fmt.Fprintln(w, "no waiter woke in 50ms: the event is not set")
	fmt.Fprintln(w, "parent sets the event")
	if err := ev.Set(); err != nil {
		return err
	}
	for i := range waiters {
		if err := recvLine(i); err != nil {
			return err
		}
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	return nil
}

//go:build linux

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-mp/mp"
)

// barrierActions is, in a child, the counter its barrier action adds to.
// The action runs in the process of the last party to arrive, with no
// argument: it can use only what that process already has, so each party
// stores the counter it was given here before it waits.
var barrierActions *mp.Value[int64]

// barrierAction is the barrier's action: Python's
//
//	b = Barrier(5, action)
var barrierAction = mp.RegisterProc("scenarios.barrierAction", func(struct{}) error {
	if barrierActions == nil {
		return errors.New("barrier action: no counter in this process")
	}
	_, err := barrierActions.Update(context.Background(), func(n int64) int64 { return n + 1 })
	return err
})

type barrierArgs struct {
	Index   int
	Barrier *mp.Barrier
	Actions *mp.Value[int64]
	Out     *mp.Conn
}

// barrierReport is what a party tells the parent once past the barrier.
type barrierReport struct {
	Index   int
	Arrival int // its arrival index in its opening, 0..parties-1
}

// barrierParty waits at the barrier, then reports.
var barrierParty = mp.RegisterProc("scenarios.barrierParty", func(a barrierArgs) error {
	defer a.Out.Close()
	barrierActions = a.Actions
	arrival, err := a.Barrier.Wait(context.Background())
	if err != nil {
		return err
	}
	return a.Out.Send(barrierReport{Index: a.Index, Arrival: arrival})
})

// Barrier starts ten processes one after another, each waiting at a
// barrier of five parties with an action: every fifth arrival opens it,
// running the action first, so the action runs twice. It prints, by
// process index:
//
//	process 0 passed the barrier
//	...
//	process 9 passed the barrier
//	arrival indices, sorted: [0 0 1 1 2 2 3 3 4 4]
//	the action ran 2 times
func Barrier(ctx context.Context, w io.Writer) error {
	const parties, procs = 5, 10
	// A timeout keeps a party from waiting forever if another never comes.
	b, err := mp.NewBarrier(parties, barrierAction, 30*time.Second)
	if err != nil {
		return err
	}
	actions, err := mp.NewValue[int64](0)
	if err != nil {
		return err
	}
	defer actions.Close()

	ps := make([]*mp.Process, procs)
	reports := make([]*mp.Conn, procs)
	for i := range procs {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewProcess(barrierParty, barrierArgs{Index: i, Barrier: b, Actions: actions, Out: out})
		err = p.Start()
		out.Close()
		if err != nil {
			return err
		}
		defer cleanup(p)
		ps[i], reports[i] = p, r
		time.Sleep(10 * time.Millisecond)
	}

	var arrivals []int
	for i, r := range reports {
		var rep barrierReport
		if err := r.Recv(&rep); err != nil {
			return fmt.Errorf("report of process %d: %w", i, err)
		}
		if rep.Index != i {
			return fmt.Errorf("process %d reported %+v", i, rep)
		}
		fmt.Fprintf(w, "process %d passed the barrier\n", i)
		arrivals = append(arrivals, rep.Arrival)
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	slices.Sort(arrivals)
	fmt.Fprintf(w, "arrival indices, sorted: %v\n", arrivals)
	n, err := actions.Get(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "the action ran %d times\n", n)
	return nil
}

//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"

	"github.com/go-mp/mp"
)

// counter is a package-level variable. Every process has its own copy: a
// child is the program started afresh, so its counter starts at 10 (not at
// whatever the parent holds), and what it changes stays in the child.
// Share state explicitly: pass it as an argument, send it over a Conn.
var counter = 10

type addArgs struct {
	N   int
	Out *mp.Conn
}

// addToCounter adds N to the child's copy of counter and reports the sum.
var addToCounter = mp.RegisterProc("scenarios.addToCounter", func(a addArgs) error {
	defer a.Out.Close()
	counter += a.N
	return a.Out.Send(counter)
})

// Globals starts two children that add 5 and 10 to their counter, then
// shows that the parent's counter has not changed:
//
//	a child adds 5 to its copy: counter = 15
//	a child adds 10 to its copy: counter = 20
//	parent: counter = 10
func Globals(ctx context.Context, w io.Writer) error {
	adds := []int{5, 10}
	procs := make([]*mp.Process, len(adds))
	reports := make([]*mp.Conn, len(adds))
	for i, n := range adds {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewProcess(addToCounter, addArgs{N: n, Out: out})
		err = p.Start()
		out.Close()
		if err != nil {
			return err
		}
		defer cleanup(p)
		procs[i], reports[i] = p, r
	}
	for i, p := range procs {
		var got int
		if err := reports[i].Recv(&got); err != nil {
			return fmt.Errorf("report of %s: %w", p.Name, err)
		}
		fmt.Fprintf(w, "a child adds %d to its copy: counter = %d\n", adds[i], got)
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "parent: counter = %d\n", counter)
	return nil
}

//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-mp/mp"
)

// delayArgs is the argument of the delayed target: how long to sleep and
// where to report when done.
type delayArgs struct {
	Delay time.Duration
	Out   *mp.Conn
}

// doneReport is what a delayed child tells its parent when it is done.
type doneReport struct {
	Name  string
	Pid   int
	Slept time.Duration
}

// delayed sleeps, then reports its name and pid: Python's
//
//	def worker(delay):
//	    time.sleep(delay)
//	    print(current_process().name, "done")
var delayed = mp.RegisterProc("scenarios.delay", func(a delayArgs) error {
	defer a.Out.Close()
	return sleepAndReport(a.Delay, a.Out)
})

func sleepAndReport(d time.Duration, out *mp.Conn) error {
	time.Sleep(d)
	me := mp.CurrentProcess()
	return out.Send(doneReport{Name: me.Name, Pid: me.Pid, Slept: d})
}

// delays are the children of the first two scenarios: both run at once,
// so the pair takes about as long as the slower one.
var delays = []struct {
	name  string
	delay time.Duration
}{{"fast", 50 * time.Millisecond}, {"slow", 150 * time.Millisecond}}

// TwoProcesses starts two children, each running the registered function
// delayed with its own delay, and joins them. It prints what each reports:
//
//	fast (pid 1234) done after 50ms
//	slow (pid 1235) done after 150ms
//	joined fast and slow
func TwoProcesses(ctx context.Context, w io.Writer) error {
	procs := make([]*mp.Process, len(delays))
	reports := make([]*mp.Conn, len(delays))
	for i, d := range delays {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewProcess(delayed, delayArgs{Delay: d.delay, Out: out})
		p.Name = d.name
		err = p.Start()
		out.Close() // the child has its own copy now
		if err != nil {
			return err
		}
		defer cleanup(p)
		procs[i], reports[i] = p, r
	}
	return joinAll(ctx, w, procs, reports)
}

// joinAll prints the report of each child, in the order of procs, and
// joins it.
func joinAll(ctx context.Context, w io.Writer, procs []*mp.Process, reports []*mp.Conn) error {
	for i, p := range procs {
		var rep doneReport
		if err := reports[i].Recv(&rep); err != nil {
			return fmt.Errorf("report of %s: %w", p.Name, err)
		}
		if rep.Name != p.Name || rep.Pid != p.Pid() {
			return fmt.Errorf("%s (pid %d) reported %+v", p.Name, p.Pid(), rep)
		}
		fmt.Fprintf(w, "%s (pid %d) done after %v\n", rep.Name, rep.Pid, rep.Slept)
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "joined %s and %s\n", procs[0].Name, procs[1].Name)
	return nil
}

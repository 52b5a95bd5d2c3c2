//go:build linux

package scenarios

import (
	"context"
	"io"
	"time"

	"github.com/go-mp/mp"
)

// Sleeper is the "subclass with run()" style of the delayed child. Its
// exported fields are copied to the child, where Run is called.
type Sleeper struct {
	Delay time.Duration
	Out   *mp.Conn // where to report when done
}

// Run sleeps, then reports the child's name and pid.
func (s *Sleeper) Run() error {
	defer s.Out.Close()
	return sleepAndReport(s.Delay, s.Out)
}

var _ = mp.RegisterRunner[Sleeper]("scenarios.sleeper")

// TwoRunners is TwoProcesses with the struct style: each child is a
// *Sleeper started with mp.NewRunnerProcess. It prints the same lines.
func TwoRunners(ctx context.Context, w io.Writer) error {
	procs := make([]*mp.Process, len(delays))
	reports := make([]*mp.Conn, len(delays))
	for i, d := range delays {
		r, out, err := mp.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := mp.NewRunnerProcess(&Sleeper{Delay: d.delay, Out: out})
		p.Name = d.name
		err = p.Start()
		out.Close()
		if err != nil {
			return err
		}
		defer cleanup(p)
		procs[i], reports[i] = p, r
	}
	return joinAll(ctx, w, procs, reports)
}

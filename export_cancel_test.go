//go:build linux

package mp

import (
	"context"

	"github.com/go-mp/mp/internal/clusterhook"
)

// HeldByWorkers returns how many tasks p's workers hold (sent to them and
// not answered), for tests that need a task queued in a worker.
func HeldByWorkers(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := range p.workers {
		n += len(w.pending)
	}
	return n
}

// PendingKills returns how many kill timers of cancelled tasks p holds
// (see Pool.kills): none once those tasks were answered or their workers
// are gone.
func PendingKills(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.kills)
}

// WorkersQuick reports whether p has workers and each is known to run
// quick tasks (see quickTask): the pool then gives it tasks ahead of the
// one it runs.
func WorkersQuick(p *Pool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		if w.pace > quickTask {
			return false
		}
	}
	return len(p.workers) > 0
}

// RunOnLocalPool runs a cluster's task of target, with no argument, on
// p as a cluster's worker does (see localPool): finish gets its outcome.
func RunOnLocalPool(ctx context.Context, p *Pool, target string, finish func([]byte, error)) {
	localPool{p}.Run(ctx, &clusterhook.Task{Target: target, Finish: finish})
}

//go:build linux

package mp

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

//go:build linux

package cluster

// cancelLedger is a worker's memory of the tasks its pools cancelled (or
// dropped: see cancelMsg), so that a task that arrives after its
// cancellation is skipped: the cancellation travels over core NATS, on
// a subject of its own, and may overtake a delivery of the task made
// before the purge; and a task the purge could not reach arrives
// whenever a worker takes it. A
// cancellation is kept until newer ones push it out, not for a time: at
// most cancelLedgerMax entries (a job cancelled whole, or one task of a
// job) are kept, and the job cancelled first goes first, with its tasks.
// The zero value is empty. Guarded by node.mu.
type cancelLedger struct {
	jobs  map[jobKey]*cancelledJob
	order []jobKey // the jobs, in the order of their first cancellation
	head  int      // order[head:] are in jobs
	n     int      // entries: jobs and their tasks
}

// cancelledJob is what a job's cancellations say: all its tasks, or
// those of idx.
type cancelledJob struct {
	all bool
	idx map[uint64]struct{}
}

// cancelLedgerMax bounds a cancelLedger: a few MB at most.
const cancelLedgerMax = 1 << 16

// add records the cancellation of task idx of k, or of all its tasks.
func (l *cancelLedger) add(k jobKey, all bool, idx uint64) {
	if l.jobs == nil {
		l.jobs = map[jobKey]*cancelledJob{}
	}
	c := l.jobs[k]
	if c == nil {
		c = &cancelledJob{}
		l.jobs[k] = c
		l.order = append(l.order, k)
		l.n++
	}
	switch {
	case c.all:
	case all:
		l.n -= len(c.idx) // all of them now
		c.all, c.idx = true, nil
	default:
		if c.idx == nil {
			c.idx = map[uint64]struct{}{}
		}
		if _, ok := c.idx[idx]; !ok {
			c.idx[idx] = struct{}{}
			l.n++
		}
	}
	for l.n > cancelLedgerMax {
		old := l.order[l.head]
		l.order[l.head] = jobKey{}
		l.head++
		l.n -= 1 + len(l.jobs[old].idx)
		delete(l.jobs, old)
	}
	if l.head > len(l.order)/2 {
		l.order = append(l.order[:0], l.order[l.head:]...)
		l.head = 0
	}
}

// has reports whether task idx of k was cancelled.
func (l *cancelLedger) has(k jobKey, idx uint64) bool {
	c := l.jobs[k]
	if c == nil {
		return false
	}
	if c.all {
		return true
	}
	_, ok := c.idx[idx]
	return ok
}

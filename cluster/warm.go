//go:build linux

package cluster

import (
	"fmt"
	"sync"
)

// Calls made one at a time go to one worker, the pool's warm worker,
// rather than to each worker in turn, as the server would have it: it
// gives a task to the request for one that has waited longest, that of
// the worker idle for longest. A worker idle for two calls instead of
// one costs each call the wake-ups of a colder process on every hop
// (cluster_apply_sync, 2 workers against 1: about 250 against 280-330 us
// a call on a 2-core machine).
//
// The tasks' consumer has the priority policy "prioritized" (taskGroup):
// the server serves the requests of lower priority number first, and
// those of one priority in order. A task carries, in its header
// workerHeader, the pool's warm worker (see warmth); the worker that
// takes a task asks for its next one with warmPriority if the task named
// it, else coldPriority. A lone task then goes to the warm worker if its
// request is at the server, and at once to another worker if it is not
// (busy, gone): nothing waits for the warm worker, and a task is given,
// acknowledged and given again as without priorities. Only the order in
// which the server serves the waiting requests changes.
const (
	taskGroup    = "mp"
	warmPriority = 0
	coldPriority = 1
)

// workerHeader names a worker by its id (node.id): on a task, the pool's
// warm worker; on a result sent directly, the worker that ran it.
const workerHeader = "Mp-Worker"

// maxWorkerID bounds the id a result sent directly may give (a worker's
// is a nuid, 22 bytes): a longer one, which is no worker's, is ignored,
// as the pool puts its warm worker's id on every task.
const maxWorkerID = 64

// warmAfter is how many results in a row from workers other than the
// warm one make the last of them the warm one. A lone task that another
// worker took because the warm one's request was not at the server yet
// leaves it warm: a single miss never switches, and two warm workers
// never take turns.
const warmAfter = 2

// warmth is a pool's warm worker: the worker whose results came last,
// with hysteresis (warmAfter).
type warmth struct {
	mu     sync.Mutex
	id     string // "" before the first result sent directly
	misses int    // results in a row from other workers
}

// current returns the warm worker's id, or "".
func (w *warmth) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// ran notes a result of worker id ("": a worker that does not say; an
// id longer than maxWorkerID is ignored too).
func (w *warmth) ran(id string) {
	if id == "" || len(id) > maxWorkerID {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.id == "" || id == w.id {
		w.id, w.misses = id, 0
		return
	}
	if w.misses++; w.misses >= warmAfter {
		w.id, w.misses = id, 0
	}
}

// pullRequests are a worker slot's requests for a task: warm (with
// warmPriority) once the slot's last task named its worker, cold
// otherwise; both the same on a consumer without priorities (made by a
// pool of an earlier version, or by a server that has none).
type pullRequests struct {
	warm, cold []byte
}

func newPullRequests(prioritized bool) pullRequests {
	expires := pullExpires.Nanoseconds()
	if !prioritized {
		r := fmt.Appendf(nil, `{"batch":1,"expires":%d}`, expires)
		return pullRequests{warm: r, cold: r}
	}
	req := func(priority int) []byte {
		return fmt.Appendf(nil, `{"batch":1,"expires":%d,"group":%q,"priority":%d}`, expires, taskGroup, priority)
	}
	return pullRequests{warm: req(warmPriority), cold: req(coldPriority)}
}

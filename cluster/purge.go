//go:build linux

package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// purger purges cancelled tasks from the stream of tasks and tells the
// workers to stop them (see session.stopTasks). A purge that fails (the
// server is unreachable, or the stream does not answer within
// requestTimeout) is tried again, after purgeRetryFirst and then twice as
// long each time up to every purgeRetryMax, until it succeeds or the
// Cluster closes: once the server answers again, the cancelled tasks
// still queued are purged, pool open or not. One purger serves a
// Cluster's pools, so that the retries outlive a pool that ends.
type purger struct {
	cn  *conn
	log *slog.Logger

	mu     sync.Mutex
	failed map[string]purgeReq // by subject: one retry covers its tasks
	wake   chan struct{}       // a purge failed
	stop   chan struct{}
	done   chan struct{}
}

// purgeReq is a purge of cancelled tasks and the cancellation that stops
// them in the workers.
type purgeReq struct {
	subject string // the tasks: one task's subject, or a job's (ending in >)
	barrier string // a subject of the stream, for the barrier (see try)
	pool    string // the pool's name: its workers hear cancellations on cancelPrefix+pool
	cancel  []byte // the cancellation (a cancelMsg)
}

const (
	purgeRetryFirst = 100 * time.Millisecond
	purgeRetryMax   = 5 * time.Second
)

func newPurger(cn *conn, log *slog.Logger) *purger {
	p := &purger{cn: cn, log: log, failed: map[string]purgeReq{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// purge purges the tasks of reqs and sends their cancellations; those
// whose purge fails are tried again (see purger).
func (p *purger) purge(reqs []purgeReq) {
	failed := p.try(reqs)
	if len(failed) == 0 {
		return
	}
	p.mu.Lock()
	for _, r := range failed {
		p.failed[r.subject] = r
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// try purges the tasks of reqs from the stream, then tells the workers to
// stop them where they run, and returns the requests whose purge failed.
// The server stores a stream's messages from a queue, in order, but
// serves a purge at once: a purge could come before a task published just
// before it is stored, and miss it. So a barrier goes first: a message to
// the stream that it refuses (it expects another stream) once it has
// taken every message queued before it (a 3-node stream's leader takes
// them in order too, and orders the purge after them). A barrier that
// was not refused fails the purges after it: they could miss a task.
//
// Every purge comes before any cancellation: a worker's slot freed by
// the cancellation of one job's running task must not find a queued task
// of another job cancelled with it (an Imap's chunks, a Terminate's
// calls) still in the stream, and not yet in its ledger (see
// session.CancelAll).
//
// The first failure ends the attempt: the server does not answer, most
// likely, and the purges left wait for the next attempt rather than each
// for its timeout (so that closing the Cluster waits for one at most).
// The cancellations go out all the same.
func (p *purger) try(reqs []purgeReq) (failed []purgeReq) {
	barriers := map[string]bool{}
	for i, r := range reqs {
		ok, sent := barriers[r.barrier]
		if !sent {
			ok = p.sendBarrier(r.barrier)
			barriers[r.barrier] = ok
		}
		if !ok || !p.purgeOne(r.subject) {
			failed = reqs[i:]
			break
		}
	}
	for _, r := range reqs {
		p.cn.nc.Publish(cancelPrefix+r.pool, r.cancel)
	}
	return failed
}

// sendBarrier sends a barrier (see try) on subject and reports whether
// the stream refused it.
func (p *purger) sendBarrier(subject string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var apiErr *jetstream.APIError
	_, err := p.cn.js.PublishMsg(ctx, &nats.Msg{Subject: subject}, jetstream.WithExpectStream(barrierStream))
	if !errors.As(err, &apiErr) {
		// No answer in time (or one that took it).
		p.log.Warn("mp cluster: the stream did not refuse the barrier before a purge", "err", err)
		return false
	}
	return true
}

// purgeOne purges the tasks of subject and reports whether it did.
func (p *purger) purgeOne(subject string) bool {
	var err error
	if h := testHookPurge; h != nil {
		err = h(subject)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		err = p.cn.tasks.Purge(ctx, jetstream.WithPurgeSubject(subject))
		cancel()
	}
	if err != nil {
		p.log.Warn("mp cluster: purge cancelled tasks (tried again)", "subject", subject, "err", err)
		return false
	}
	return true
}

// testHookPurge, if a test sets it, runs before each purge of cancelled
// tasks; an error it returns fails that purge.
var testHookPurge func(subject string) error

// barrierStream is the stream a barrier expects (see try): none, so that
// the tasks' stream refuses it.
const barrierStream = "MP_NO_STREAM"

// loop tries the failed purges again, until none is left or the purger
// closes.
func (p *purger) loop() {
	defer close(p.done)
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		for wait := purgeRetryFirst; ; wait = min(2*wait, purgeRetryMax) {
			select {
			case <-time.After(wait):
			case <-p.stop:
				return
			}
			p.mu.Lock()
			reqs := make([]purgeReq, 0, len(p.failed))
			for _, r := range p.failed {
				reqs = append(reqs, r)
			}
			clear(p.failed)
			p.mu.Unlock()
			if len(reqs) == 0 {
				break
			}
			failed := p.try(reqs)
			p.mu.Lock()
			for _, r := range failed {
				if _, again := p.failed[r.subject]; !again {
					p.failed[r.subject] = r
				}
			}
			p.mu.Unlock()
		}
	}
}

// close gives up the purges not done yet, which it logs: their tasks stay
// queued, and run when a worker takes them.
func (p *purger) close() {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	n := len(p.failed)
	p.mu.Unlock()
	if n > 0 {
		p.log.Warn("mp cluster: closed with purges of cancelled tasks not done", "purges", n)
	}
}

//go:build linux

// Package clusterhook is the seam between the root package mp, which must
// not import NATS, and package cluster, which spreads a Pool over NATS
// JetStream. The root package fills in the hooks that need its unexported
// machinery (the fingerprint of the registered targets, a local pool that
// runs encoded tasks); package cluster implements Backend, which
// mp.PoolOptions.Cluster holds, and registers what mp.Main runs in a
// process started as a remote worker.
package clusterhook

import (
	"bytes"
	"context"
	"time"
)

// Task is one task of a pool in the form it crosses processes: a
// registered target's name and its encoded argument (one item, or a chunk
// of items when Chunk is set).
type Task struct {
	Target string
	Chunk  bool
	// Arg is the encoded argument; nil when Encode is set.
	Arg []byte
	// Encode, if set, writes the argument into buf: a Map's chunk is
	// encoded only when it is sent. It may fail once the Map is over.
	Encode  func(buf *bytes.Buffer) error
	Timeout time.Duration // 0: none
	// ID, if set, is the task's id in the cluster, which its target's
	// ctx carries (see TaskID).
	ID string
	// Finish receives the encoded result or the error. The pool's side
	// ignores any call after the first.
	Finish func(result []byte, err error)
	// Canceled is the session's own, under its lock: set by a Cancel
	// that came before Submit registered the task (its caller's ctx
	// ended in between), so that Submit never sends it.
	Canceled bool
}

// Config is what a pool tells its cluster when it opens.
type Config struct {
	// Processes is the number of local workers that take the pool's
	// tasks from the cluster in this process; 0 makes a submit-only pool.
	Processes int
	// NewLocal starts those workers' local pool (a pool of this process's
	// options, without the cluster).
	NewLocal func() (Local, error)
	// TaskTimeout is the pool's, given to each task that has none.
	TaskTimeout time.Duration
	// OnTerminate, if set, is called by the session's Terminate before
	// it fails the tasks, whoever terminates it: the pool, or its
	// cluster as it closes. The pool then knows itself terminated before
	// any of its calls sees a task fail with ErrPoolTerminated, and takes
	// that failure for its stop rather than the task's own (an Imap
	// yields it once).
	OnTerminate func()
}

// Backend is what mp.PoolOptions.Cluster holds: package cluster's
// *Cluster.
type Backend interface {
	OpenPool(cfg Config) (Session, error)
}

// Session is a pool's link to its cluster.
type Session interface {
	// Submit sends tasks, as one job; each Finish is called once, with
	// the result or the error, except for a task cancelled before Submit
	// registered it (see Cancel), which is never sent nor finished.
	Submit(ts []*Task) error
	// Cancel stops t, whose caller has its error already: a t not yet
	// sent is never sent (also one that Submit has yet to register), a t
	// sent is dropped from the queue if it is still there, and stopped
	// where it runs. Its Finish is not called (as for any cancelled
	// task).
	Cancel(t *Task)
	// CancelAll is Cancel of each of ts, the tasks of one call (a Map's
	// chunks, an Imap's chunks in flight) or of several, as one
	// cancellation: every one of them that is queued is out of the
	// workers' reach before any of them is stopped where it runs, so
	// that a worker's slot freed by stopping one never takes another
	// (see package cluster). A call of one task uses Cancel.
	CancelAll(ts []*Task)
	// DropAll is CancelAll for tasks whose results nobody waits for but
	// whose running ones must not be stopped (an Imap of a target that
	// does not see its ctx, whose loop stopped early): those not sent are
	// never sent, those queued are dropped from the queue (a worker that
	// takes one after it heard the drop skips it), and those running run
	// to their end, their results dropped. Their Finish is not called.
	DropAll(ts []*Task)
	// Slots is about how many tasks the cluster runs at a time, for
	// choosing chunk sizes; at least 1.
	Slots() int
	// MaxTaskBytes is about the most bytes of encoded argument a task
	// may carry (what the transport accepts, less room for the task's
	// other fields), for capping Map's chunks; 0 for no limit.
	MaxTaskBytes() int
	// Close takes no more jobs; Done is closed once the jobs are done.
	Close()
	// Terminate fails the jobs not done with err and stops them.
	Terminate(err error)
	Done() <-chan struct{}
}

// Local is a local pool that runs encoded tasks: a cluster worker's.
type Local interface {
	// Run runs t; t.Finish gets its result or error (as a pool gives it:
	// *mp.RemoteError, an mp.ErrTaskTimeout, an *mp.WorkerLostError, or
	// ctx.Err() once ctx ends).
	Run(ctx context.Context, t *Task)
	// Slots is how many tasks it runs at a time.
	Slots() int
	// Terminate stops it and waits for its workers to exit.
	Terminate()
}

// Filled in by the root package.
var (
	// Fingerprint returns a short hex digest of the registered targets'
	// names and argument and result types: tasks reach only workers with
	// the same.
	Fingerprint func() string
	// NewLocal starts a local pool with opts, an mp.PoolOptions.
	NewLocal func(opts any) (Local, error)
	// TaskID returns the id of the task whose target ctx belongs to, or
	// "".
	TaskID func(ctx context.Context) string
	// ChunkForms says how the chunks of a registered target's arguments
	// and results travel, so that a chunk too large for the cluster's
	// messages can be cut in parts and their results joined; ok is
	// false for a name not registered.
	ChunkForms func(target string) (arg, res ChunkForm, ok bool)
)

// ChunkForm is how a chunk of items travels: as the items' memory, Size
// bytes each (Raw), or else as a CBOR array of the items.
type ChunkForm struct {
	Raw  bool
	Size int
}

// Main, if set (by package cluster), runs in mp.Main of a process that
// is no child of mp's: it returns at once unless the environment makes
// the process a cluster worker, which then exits from it.
var Main func()

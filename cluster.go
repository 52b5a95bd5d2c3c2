//go:build linux

package mp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
)

// Cluster is where a Pool or an Executor with PoolOptions.Cluster set
// sends its tasks, to be run by workers on any machine: it is implemented
// by *cluster.Cluster (package github.com/go-mp/mp/cluster), which
// spreads the tasks over NATS JetStream. Package mp itself never imports
// NATS.
//
// A pool on a cluster keeps its API: Apply, Map, Imap, an Executor's
// Submit. What changes is what a task may do: see package cluster for the
// guarantees (a task runs at least once, the caller gets exactly one
// result per item).
type Cluster interface {
	OpenPool(cfg clusterhook.Config) (clusterhook.Session, error)
}

// NoLocalWorkers, as PoolOptions.Processes of a pool on a cluster, makes
// a submit-only pool: this process runs none of its tasks, remote workers
// run them all.
const NoLocalWorkers = -1

// clusterPool is the part of a Pool on a cluster: its tasks go to the
// cluster's session instead of local workers.
type clusterPool struct {
	s     clusterhook.Session
	mu    sync.Mutex
	tasks map[*task]*clusterhook.Task // submitted and not finished, for cancelTask
	// terminated is closed once Terminate has failed every task: a
	// submit still publishing then returns (see submit).
	terminated     chan struct{}
	terminatedOnce sync.Once
}

// taskKeyCtx is the ctx key of a task's id given by a cluster.
type taskKeyCtx struct{}

// withTaskKey gives a target's ctx its task's id (see cluster.TaskID).
func withTaskKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, taskKeyCtx{}, key)
}

func init() {
	clusterhook.TaskID = func(ctx context.Context) string {
		k, _ := ctx.Value(taskKeyCtx{}).(string)
		return k
	}
	clusterhook.Fingerprint = fingerprint
	clusterhook.ChunkForms = func(target string) (arg, res clusterhook.ChunkForm, ok bool) {
		e, ok := lookup(target)
		if !ok || e.chunkForms == nil {
			return arg, res, false
		}
		arg, res = e.chunkForms()
		return arg, res, true
	}
	clusterhook.NewLocal = func(opts any) (clusterhook.Local, error) {
		o, ok := opts.(PoolOptions)
		if !ok {
			return nil, fmt.Errorf("mp: local pool options of type %T", opts)
		}
		o.Cluster = nil
		p, err := NewPool(o)
		if err != nil {
			return nil, err
		}
		return localPool{p}, nil
	}
}

// newClusterPool makes a pool whose tasks go to opts.Cluster; its local
// workers, if any, take them from there too (see clusterhook.Config).
func newClusterPool(opts PoolOptions) (*Pool, error) {
	if opts.Processes < NoLocalWorkers || opts.MaxTasksPerChild < 0 || opts.TaskTimeout < 0 {
		return nil, fmt.Errorf("mp: bad pool options %+v", opts)
	}
	local := opts
	local.Cluster = nil
	cfg := clusterhook.Config{Processes: max(opts.Processes, 0), TaskTimeout: opts.TaskTimeout,
		NewLocal: func() (clusterhook.Local, error) { return clusterhook.NewLocal(local) }}
	if opts.Processes == 0 {
		cfg.Processes = runtime.GOMAXPROCS(0)
	}
	p := &Pool{opts: opts, workers: map[*worker]struct{}{}, done: make(chan struct{})}
	p.wake = sync.NewCond(&p.mu)
	// Also when the cluster closes, which terminates its pools (see
	// Pool.stoppedBy).
	cfg.OnTerminate = func() {
		p.mu.Lock()
		p.state = poolTerminated
		p.mu.Unlock()
	}
	s, err := opts.Cluster.OpenPool(cfg)
	if err != nil {
		return nil, err
	}
	p.cluster = &clusterPool{s: s, tasks: map[*task]*clusterhook.Task{}, terminated: make(chan struct{})}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		<-s.Done()
		close(p.done)
	}()
	return p, nil
}

// submit sends ts to the cluster as one job. ctx's end cancels them, as
// in a local pool (with watch false, once they are sent, ctx is the
// caller's to watch: see Pool.submitTasks).
//
// The session's Submit publishes the tasks one by one and may take a
// while: a Map's hundreds of chunks, or a publication that waits for a
// slow or stopped server (up to its timeout). If ctx ends meanwhile,
// submit does not wait for it: it cancels ts at once, so that the
// session publishes none of them that it has not begun to publish by
// then (the one under way goes out and is stopped: see
// clusterhook.Session.Cancel), gives their callers ctx.Err(), and
// returns ctx.Err(). Terminate alike: submit returns ErrPoolTerminated
// once Terminate has failed the tasks. The Submit left running returns
// once that publication does; the pool's Join waits for it.
func (c *clusterPool) submit(p *Pool, ctx context.Context, watch bool, ts []*task) error {
	async := ctx.Done() != nil
	p.mu.Lock()
	state := p.state
	if state == poolRunning && async {
		// Before Join can wait: Join comes after Close or Terminate.
		p.running.Add(1)
	}
	p.mu.Unlock()
	if state != poolRunning {
		return ErrPoolClosed
	}
	hts := make([]*clusterhook.Task, len(ts))
	c.mu.Lock()
	for i, t := range ts {
		// Sent at once: it is in the cluster's queue, out of the
		// pool's reach (an Executor's Cancel then reports it running).
		t.state.Store(taskSent)
		if t.timeout == 0 {
			t.timeout = p.opts.TaskTimeout
		}
		more := t.extra()
		hts[i] = &clusterhook.Task{Target: t.target, Chunk: more.chunk, Arg: t.arg, Encode: more.encode, Timeout: t.timeout,
			Finish: func(b []byte, err error) {
				c.mu.Lock()
				delete(c.tasks, t)
				c.mu.Unlock()
				t.deliver(b, err)
			}}
		c.tasks[t] = hts[i]
	}
	c.mu.Unlock()
	if watch && async {
		for _, t := range ts {
			p.watch(ctx, t)
		}
	}
	if !async {
		return c.send(ts, hts)
	}
	sent := make(chan error, 1)
	own := slices.Clone(ts) // ts, a variadic's array, stays on the caller's stack
	go func() {
		defer p.running.Done()
		sent <- c.send(own, hts)
	}()
	select {
	case err := <-sent:
		return err
	case <-ctx.Done():
		err := ctx.Err()
		c.cancelTasks(ts, err)
		return err
	case <-c.terminated:
		// The session failed and stopped the tasks it had; those it
		// has yet to take, it drops (see clusterhook.Session.Cancel).
		c.cancelTasks(ts, ErrPoolTerminated)
		return ErrPoolTerminated
	}
}

// send has the session publish hts, the cluster's form of ts, which
// submit registered; if it fails, they are forgotten (and their callers,
// which finish them through deliver, stop the watches of their ctx: see
// Pool.submitTasks).
func (c *clusterPool) send(ts []*task, hts []*clusterhook.Task) error {
	err := c.s.Submit(hts)
	if err != nil {
		c.mu.Lock()
		for _, t := range ts {
			delete(c.tasks, t)
		}
		c.mu.Unlock()
	}
	return err
}

// cancelTask gives t's caller err and has the cluster stop t.
func (c *clusterPool) cancelTask(t *task, err error) { c.cancelTasks([]*task{t}, err) }

// cancelTasks gives the callers of ts, the tasks of one call (or of
// several), err and has the cluster stop them with one cancellation (see
// clusterhook.Session.CancelAll): cancelled one by one, a running task
// stopped before a queued one of the same call was cancelled freed a
// worker's slot that could take that queued task and run it.
func (c *clusterPool) cancelTasks(ts []*task, err error) { c.endTasks(ts, err, false) }

// dropTasks is cancelTasks but for the workers, which stop none of ts
// (see clusterhook.Session.DropAll): those queued never run, those
// running run to their end.
func (c *clusterPool) dropTasks(ts []*task, err error) { c.endTasks(ts, err, true) }

// endTasks is cancelTasks, or dropTasks with drop.
func (c *clusterPool) endTasks(ts []*task, err error, drop bool) {
	claimed := make([]bool, len(ts))
	hts := make([]*clusterhook.Task, 0, len(ts))
	c.mu.Lock()
	for i, t := range ts {
		t.flags.set(flagCanceled)
		claimed[i] = t.flags.set(flagSettled)
		if ht := c.tasks[t]; ht != nil {
			hts = append(hts, ht)
			delete(c.tasks, t)
		}
	}
	c.mu.Unlock()
	switch {
	case len(hts) == 0:
	case drop:
		c.s.DropAll(hts)
	case len(hts) == 1:
		c.s.Cancel(hts[0])
	default:
		c.s.CancelAll(hts)
	}
	// Finished last: once a caller has err, its tasks are cancelled.
	for i, t := range ts {
		if claimed[i] {
			t.finish.done(nil, err)
		}
	}
}

// close takes no more work; the pool's done channel closes once the
// cluster has finished the work given.
func (c *clusterPool) close(p *Pool) {
	p.mu.Lock()
	if p.state == poolRunning {
		p.state = poolClosed
	}
	p.mu.Unlock()
	c.s.Close()
}

// terminate fails the work not done with ErrPoolTerminated and stops it.
func (c *clusterPool) terminate(p *Pool) {
	// Marked here too, whatever the Session does with Config.OnTerminate
	// (which a cluster's Close needs).
	p.mu.Lock()
	p.state = poolTerminated
	p.mu.Unlock()
	c.s.Terminate(ErrPoolTerminated)
	// After the session's Terminate, which fails and stops the tasks of
	// every call as one: the submits it wakes then cancel only those
	// their Submit has yet to take, which are never sent (see submit).
	c.terminatedOnce.Do(func() { close(c.terminated) })
}

// localPool runs a cluster worker's tasks in a local pool.
type localPool struct{ p *Pool }

func (l localPool) Run(ctx context.Context, ht *clusterhook.Task) {
	if _, ok := lookup(ht.Target); !ok {
		ht.Finish(nil, fmt.Errorf("%w %q in this binary", ErrUnknownTarget, ht.Target))
		return
	}
	t := &task{target: ht.Target, more: &taskMore{key: ht.ID, chunk: ht.Chunk}, arg: ht.Arg, timeout: ht.Timeout, finish: finishFunc(ht.Finish)}
	if err := l.p.submit(ctx, t); err != nil {
		t.deliver(nil, err) // see Pool.submitTasks
	}
}

func (l localPool) Slots() int { return l.p.Processes() }

func (l localPool) Terminate() {
	l.p.Terminate()
	l.p.Join(context.Background())
}

// chunkFormsOf says how chunks of As and of Rs travel (see
// codec.RawChunks).
func chunkFormsOf[A, R any]() (arg, res clusterhook.ChunkForm) {
	return chunkForm[A](), chunkForm[R]()
}

func chunkForm[T any]() clusterhook.ChunkForm {
	if codec.RawChunks[T]() {
		return clusterhook.ChunkForm{Raw: true, Size: int(reflect.TypeFor[T]().Size())}
	}
	return clusterhook.ChunkForm{}
}

// typesOf names a target's argument and result types for fingerprint.
func typesOf[A, R any]() string {
	return typeName(reflect.TypeFor[A]()) + " -> " + typeName(reflect.TypeFor[R]())
}

// typeName names t with its package path, and a struct's fields, so that
// two builds whose types differ in shape differ in their fingerprint.
func typeName(t reflect.Type) string {
	var b strings.Builder
	writeType(&b, t, 0)
	return b.String()
}

func writeType(b *strings.Builder, t reflect.Type, depth int) {
	if t.PkgPath() != "" {
		b.WriteString(t.PkgPath() + ".")
	}
	b.WriteString(t.String())
	if depth > 3 {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		b.WriteString("{")
		for i := range t.NumField() {
			f := t.Field(i)
			b.WriteString(f.Name + " ")
			writeType(b, f.Type, depth+1)
			b.WriteString(";")
		}
		b.WriteString("}")
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		if t.Name() == "" {
			return // the element is in t.String(); a named type's may hide a struct
		}
		b.WriteString("[")
		writeType(b, t.Elem(), depth+1)
		b.WriteString("]")
	}
}

// fingerprint digests the registered targets' names and types: a
// cluster's tasks reach only workers of the same (see Cluster).
func fingerprint() string {
	regMu.RLock()
	lines := make([]string, 0, len(targets))
	for name, e := range targets {
		lines = append(lines, name+"\x00"+e.types)
	}
	regMu.RUnlock()
	slices.Sort(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:8])
}

// chunkBytes is about the most bytes of encoded items in one of Map's
// chunks: mapChunkBytes, or less for a pool on a cluster whose messages
// are smaller (clusterhook.Session.MaxTaskBytes).
func (p *Pool) chunkBytes() int {
	if p.cluster != nil {
		if m := p.cluster.s.MaxTaskBytes(); m > 0 {
			return min(m, mapChunkBytes)
		}
	}
	return mapChunkBytes
}

//go:build linux

// Package scenarios holds the runnable examples of mp: the seed scenarios of
// Python's multiprocessing, done the Go way. Each scenario is a function
// that runs in the parent and writes what it shows to w; the children it
// starts report to it over a Conn, because a child's own standard output
// goes straight to the terminal, in no particular order with the parent's.
//
// Every target is registered at package level, so a program that imports
// this package (and calls mp.Main first) can run any scenario. The command
// examples/tour runs them all; examples/<name> runs one.
package scenarios

import (
	"context"
	"io"

	"github.com/go-mp/mp"
)

// A Scenario is one runnable example.
type Scenario struct {
	Name  string // the directory of its command under examples/
	Title string
	Run   func(ctx context.Context, w io.Writer) error
}

// All lists the scenarios in the order the tour runs them. Adding a
// scenario is one line here (and its file, and its examples/<name>/main.go).
var All = []Scenario{
	{"processes", "two processes with different delays, function style", TwoProcesses},
	{"runner", "the same with a struct and its Run method", TwoRunners},
	{"globals", "package-level variables are not shared", Globals},
	{"producer", "a producer and a consumer on a pipe, ending on EOF", ProducerConsumer},
	{"adder", "an adder server on a duplex pipe", Adder},
	{"barrier", "ten processes through a barrier of five parties with an action", Barrier},
	{"lockpids", "a critical section guarded by a shared Lock", LockPids},
	{"event", "processes waiting on an Event until the parent sets it", EventSignal},
	{"counter", "a shared Value incremented and decremented at once", SharedCounter},
	{"floatchannel", "messages of floats through a RawArray and two semaphores", FloatChannelScenario},
	{"sentinel", "a producer and a consumer on a Queue, ending on a sentinel", Sentinel},
	{"joinable", "a JoinableQueue, a daemon consumer and Join", Joinable},
	{"tenconsumers", "ten consumers on one JoinableQueue", TenConsumers},
	{"balance", "a bounded Queue between a fast producer and slow consumers", Balance},
	{"apply", "a synchronous apply in a pool", Apply},
	{"applyasync", "apply_async, then close, join and get", ApplyAsyncCloseJoin},
	{"callback", "apply_async with callbacks that run in the parent", Callback},
	{"imap", "imap against imap_unordered", Imap},
	{"initializer", "a pool with an initializer and max tasks per child", Initializer},
	{"poolvsprocs", "a pool of 4 against 100 processes", PoolVsProcesses},
	{"digest", "SHA-512 of every file under a directory with imap_unordered", Digest},
	{"executor", "an executor: submit, map, as_completed, callbacks, shutdown", Executor},
	{"managerdict", "ten workers write their pid into a manager's Dict and List", ManagerDict},
	{"managervalue", "a manager Value that children add to", ManagerValue},
	{"managerlock", "a manager Value and Lock, incremented and decremented at once", ManagerLock},
	{"managerremote", "a queue served over TCP, used by another program", ManagerRemote},
}

// cleanup makes sure p is not left running when a scenario returns early
// with an error: it kills p if it still runs, waits for it and releases it.
// After a successful Join it only releases p.
func cleanup(p *mp.Process) {
	p.Kill()
	p.Join(context.Background())
	p.Close()
}

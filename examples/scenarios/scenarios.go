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
}

// cleanup makes sure p is not left running when a scenario returns early
// with an error: it kills p if it still runs, waits for it and releases it.
// After a successful Join it only releases p.
func cleanup(p *mp.Process) {
	p.Kill()
	p.Join(context.Background())
	p.Close()
}

//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"slices"

	"github.com/go-mp/mp"
)

// Targets run in a child: the test binary re-executed, which reaches them
// through mp.Main in TestMain. They report to the parent over a Conn, and
// the parent prints, because a child's standard output is not the
// example's.

type exampleGreetArgs struct {
	Who string
	Out *mp.Conn
}

var exampleGreet = mp.RegisterProc("example.greet", func(a exampleGreetArgs) error {
	defer a.Out.Close()
	return a.Out.Send("hello " + a.Who + " from " + mp.CurrentProcess().Name)
})

// Python's Process(target=f, args=(...)): a function registered under a
// stable name, started in a child with a typed argument.
func ExampleNewProcess() {
	r, w, err := mp.Pipe(false) // r receives, w sends
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	p := mp.NewProcess(exampleGreet, exampleGreetArgs{Who: "bob", Out: w})
	p.Name = "greeter"
	err = p.Start()
	w.Close() // the child has its own copy now
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	if err := r.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg)
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	code, _ := p.ExitCode()
	fmt.Println("exit code", code)
	// Output:
	// hello bob from greeter
	// exit code 0
}

// exampleGreeter is the "subclass with run()" style: its exported fields
// travel to the child, its unexported ones do not.
type exampleGreeter struct {
	Who  string
	Out  *mp.Conn
	note string
}

func (g *exampleGreeter) Run() error {
	defer g.Out.Close()
	return g.Out.Send(fmt.Sprintf("hello %s from %s (note %q)", g.Who, mp.CurrentProcess().Name, g.note))
}

var _ = mp.RegisterRunner[exampleGreeter]("example.greeter")

func ExampleNewRunnerProcess() {
	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	p := mp.NewRunnerProcess(&exampleGreeter{Who: "alice", Out: w, note: "stays here"})
	p.Name = "runner"
	err = p.Start()
	w.Close()
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	if err := r.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg)
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// hello alice from runner (note "")
}

// exampleReply answers one message on a duplex Conn.
var exampleReply = mp.RegisterProc("example.reply", func(c *mp.Conn) error {
	defer c.Close()
	var name string
	if err := c.Recv(&name); err != nil {
		return err
	}
	return c.Send([]any{42, nil, "hello " + name})
})

// A duplex pipe: one end stays in the parent, the other is passed to the
// child as its argument. Once the child has closed its end (and the parent
// its copy of it), Recv reports io.EOF.
func ExamplePipe() {
	parentEnd, childEnd, err := mp.Pipe(true)
	if err != nil {
		log.Fatal(err)
	}
	defer parentEnd.Close()

	p := mp.NewProcess(exampleReply, childEnd)
	err = p.Start()
	childEnd.Close()
	if err != nil {
		log.Fatal(err)
	}
	if err := parentEnd.Send("carol"); err != nil {
		log.Fatal(err)
	}
	var msg []any
	if err := parentEnd.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg)
	err = parentEnd.Recv(&msg)
	fmt.Println("then:", err, errors.Is(err, io.EOF))
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// [42 <nil> hello carol]
	// then: EOF true
}

// RecvBytesInto fills a buffer the caller owns; a message that does not
// fit comes back whole inside a *BufferTooShortError.
func ExampleConn_RecvBytesInto() {
	a, b, err := mp.Pipe(true)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	defer b.Close()

	buf := make([]byte, 16)
	a.SendBytes([]byte("thank you"))
	n, err := b.RecvBytesInto(buf, 4)
	fmt.Printf("%d bytes at offset 4: %q, %v\n", n, buf[4:4+n], err)

	a.SendBytes([]byte("a message longer than the buffer"))
	_, err = b.RecvBytesInto(buf, 0)
	var short *mp.BufferTooShortError
	if errors.As(err, &short) {
		fmt.Printf("too short, the whole message is in the error: %q\n", short.Message)
	}
	fmt.Println(errors.Is(err, mp.ErrBufferTooShort))
	// Output:
	// 9 bytes at offset 4: "thank you", <nil>
	// too short, the whole message is in the error: "a message longer than the buffer"
	// true
}

type exampleSendArgs struct {
	ID  int
	Out *mp.Conn
}

var exampleSend = mp.RegisterProc("example.send", func(a exampleSendArgs) error {
	defer a.Out.Close()
	for i := range 2 {
		if err := a.Out.Send(fmt.Sprintf("child %d: message %d", a.ID, i)); err != nil {
			return err
		}
	}
	return nil
})

// Wait serves several connections at once, as Python's
// multiprocessing.connection.wait does: it returns those ready to receive a
// message or EOF. It also waits for processes to end.
func ExampleWait() {
	ctx := context.Background()
	var readers []*mp.Conn
	var procs []*mp.Process
	for id := range 3 {
		r, w, err := mp.Pipe(false)
		if err != nil {
			log.Fatal(err)
		}
		p := mp.NewProcess(exampleSend, exampleSendArgs{ID: id, Out: w})
		err = p.Start()
		w.Close()
		if err != nil {
			log.Fatal(err)
		}
		readers = append(readers, r)
		procs = append(procs, p)
	}

	for len(readers) > 0 {
		ready, err := mp.Wait(ctx, readers...)
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range ready {
			var msg string
			switch err := r.Recv(&msg); {
			case errors.Is(err, io.EOF):
				r.Close()
				readers = slices.DeleteFunc(readers, func(x *mp.Conn) bool { return x == r })
			case err != nil:
				log.Fatal(err)
			default:
				fmt.Println(msg)
			}
		}
	}

	for len(procs) > 0 {
		ready, err := mp.Wait(ctx, procs...)
		if err != nil {
			log.Fatal(err)
		}
		for _, p := range ready {
			if code, _ := p.ExitCode(); code != 0 {
				log.Fatalf("%v", p)
			}
			p.Close()
			procs = slices.DeleteFunc(procs, func(x *mp.Process) bool { return x == p })
		}
	}
	fmt.Println("all children ended")
	// Unordered output:
	// child 0: message 0
	// child 0: message 1
	// child 1: message 0
	// child 1: message 1
	// child 2: message 0
	// child 2: message 1
	// all children ended
}

// exampleBlock tells the parent it runs, then waits until the parent
// closes its end.
var exampleBlock = mp.RegisterProc("example.block", func(c *mp.Conn) error {
	defer c.Close()
	if err := c.Send("running"); err != nil {
		return err
	}
	_, err := c.RecvBytes(0)
	return err
})

// Terminate sends SIGTERM; the exit code is then -15, as in Python.
func ExampleProcess_Terminate() {
	c, childEnd, err := mp.Pipe(true)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	p := mp.NewProcess(exampleBlock, childEnd)
	p.Daemon = true // it ends with this process, whatever happens
	err = p.Start()
	childEnd.Close()
	if err != nil {
		log.Fatal(err)
	}
	var state string
	if err := c.Recv(&state); err != nil {
		log.Fatal(err)
	}
	fmt.Println("child is", state)

	if err := p.Terminate(); err != nil {
		log.Fatal(err)
	}
	err = p.Join(context.Background())
	var exit *mp.ExitError
	if errors.As(err, &exit) {
		fmt.Println("killed by signal:", exit.Signal())
	}
	code, _ := p.ExitCode()
	fmt.Println("exit code:", code)
	p.Close()
	// Output:
	// child is running
	// killed by signal: terminated
	// exit code: -15
}

// exampleFamily reports what a child knows of its parent.
var exampleFamily = mp.RegisterProc("example.family", func(out *mp.Conn) error {
	defer out.Close()
	parent := mp.ParentProcess()
	if err := out.Send(fmt.Sprintf("my parent is %s, alive: %v", parent.Name, parent.IsAlive())); err != nil {
		return err
	}
	_, err := out.RecvBytes(0) // wait until the parent closes its end
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
})

// ParentProcess describes the parent from inside a child (nil in the main
// process); ActiveChildren lists the children still running.
func ExampleActiveChildren() {
	fmt.Println("main process has a parent:", mp.ParentProcess() != nil)

	c, childEnd, err := mp.Pipe(true)
	if err != nil {
		log.Fatal(err)
	}
	p := mp.NewProcess(exampleFamily, childEnd)
	err = p.Start()
	childEnd.Close()
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	if err := c.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println("child:", msg)
	fmt.Println("active:", slices.Contains(mp.ActiveChildren(), p))

	c.Close() // the child returns
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("active after Join:", slices.Contains(mp.ActiveChildren(), p))
	// Output:
	// main process has a parent: false
	// child: my parent is MainProcess, alive: true
	// active: true
	// active after Join: false
}

// Targets are registered at package level, so that a child (this binary
// re-executed, which runs its package initialisation again) finds them by
// name.
var (
	exampleLen = mp.Register("example.len", func(w string) (int, error) { return len(w), nil })

	exampleProduce = mp.RegisterProc("example.produce", func(q *mp.Queue[string]) error {
		return q.Put(context.Background(), "hello from "+mp.CurrentProcess().Name)
	})
)

// The core of mp: registered functions run in child processes, which share
// queues (and locks, values, ...) with the parent, and in pools of worker
// processes. A program calls mp.Main first in main; a test binary, in
// TestMain.
func Example() {
	ctx := context.Background()

	q, err := mp.NewQueue[string](0)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	p := mp.NewProcess(exampleProduce, q)
	p.Name = "producer"
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	msg, err := q.Get(ctx)
	fmt.Println(msg, err)
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}

	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	lens, err := exampleLen.Map(ctx, pool, []string{"go", "python", "multiprocessing"}, 0)
	fmt.Println(lens, err)
	pool.Close()
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// hello from producer <nil>
	// [2 6 15] <nil>
}

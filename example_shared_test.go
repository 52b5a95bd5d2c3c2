//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/go-mp/mp"
)

// ---- Value ----

type exampleCountArgs struct {
	Counter *mp.Value[int64]
	Times   int
	Out     *mp.Conn
}

// exampleCount increments a shared counter under its lock.
var exampleCount = mp.RegisterProc("example.count", func(a exampleCountArgs) error {
	defer a.Out.Close()
	ctx := context.Background()
	for range a.Times {
		if _, err := a.Counter.Update(ctx, func(n int64) int64 { return n + 1 }); err != nil {
			return err
		}
	}
	return a.Out.Send(fmt.Sprintf("%s added %d", mp.CurrentProcess().Name, a.Times))
})

// Python's Value('q', 0): a counter in shared memory that two children
// increment under its lock.
func ExampleNewValue() {
	ctx := context.Background()
	counter, err := mp.NewValue(int64(0))
	if err != nil {
		log.Fatal(err)
	}
	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	var procs []*mp.Process
	for i := range 2 {
		p := mp.NewProcess(exampleCount, exampleCountArgs{Counter: counter, Times: 1000, Out: w})
		p.Name = fmt.Sprintf("worker-%d", i)
		if err := p.Start(); err != nil {
			log.Fatal(err)
		}
		procs = append(procs, p)
	}
	w.Close()
	var reports []string
	for range procs {
		var msg string
		if err := r.Recv(&msg); err != nil {
			log.Fatal(err)
		}
		reports = append(reports, msg)
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			log.Fatal(err)
		}
	}
	if reports[0] > reports[1] {
		reports[0], reports[1] = reports[1], reports[0]
	}
	fmt.Println(strings.Join(reports, ", "))
	n, err := counter.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("counter:", n)

	// Several operations as one: hold the lock, use Load and Store.
	if err := counter.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	counter.Store(counter.Load() * 2)
	counter.Release()
	fmt.Println("doubled:", counter.Load())
	// Output:
	// worker-0 added 1000, worker-1 added 1000
	// counter: 2000
	// doubled: 4000
}

// ---- Array ----

type exampleSquareArgs struct {
	Data *mp.Array[float64]
	Out  *mp.Conn
}

// exampleSquare squares every element in place, holding the lock, and
// reports the sum.
var exampleSquare = mp.RegisterProc("example.square", func(a exampleSquareArgs) error {
	defer a.Out.Close()
	if err := a.Data.Acquire(context.Background()); err != nil {
		return err
	}
	sum := 0.0
	s := a.Data.Slice()
	for i, x := range s {
		s[i] = x * x
		sum += s[i]
	}
	if err := a.Data.Release(); err != nil {
		return err
	}
	return a.Out.Send(sum)
})

// Python's Array('d', [...]): the child changes the elements in place and
// the parent sees them.
func ExampleNewArray() {
	ctx := context.Background()
	data, err := mp.NewArrayFrom([]float64{1, 2, 3, 4, 5})
	if err != nil {
		log.Fatal(err)
	}
	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	p := mp.NewProcess(exampleSquare, exampleSquareArgs{Data: data, Out: w})
	err = p.Start()
	w.Close()
	if err != nil {
		log.Fatal(err)
	}
	var sum float64
	if err := r.Recv(&sum); err != nil {
		log.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("child's sum:", sum)

	out := make([]float64, data.Len())
	if err := data.CopyTo(ctx, out); err != nil {
		log.Fatal(err)
	}
	fmt.Println("array:", out)
	third, _ := data.Get(ctx, 2)
	fmt.Println("third:", third)
	if _, err := data.Get(ctx, 5); errors.Is(err, mp.ErrIndexOutOfRange) {
		fmt.Println("index 5:", err)
	}
	// Output:
	// child's sum: 55
	// array: [1 4 9 16 25]
	// third: 9
	// index 5: mp: index out of range: index 5 with length 5
}

// ---- SharedMemory ----

type exampleShmArgs struct {
	Name string // the block's name: all an unrelated process needs
	Out  *mp.Conn
}

// exampleShmReader attaches to a block by name, reads the greeting and
// writes an answer after it.
var exampleShmReader = mp.RegisterProc("example.shmReader", func(a exampleShmArgs) error {
	defer a.Out.Close()
	m, err := mp.AttachSharedMemory(a.Name)
	if err != nil {
		return err
	}
	defer m.Close()
	b := m.Bytes()
	greeting := string(b[:strings.IndexByte(string(b), 0)])
	copy(b[len(greeting)+1:], "hi parent")
	return a.Out.Send(fmt.Sprintf("read %q from a %d-byte block", greeting, m.Size()))
})

// Python's shared_memory.SharedMemory: a block found by name. The name
// lives until Unlink (or until the creator exits); the memory until every
// process has closed it.
func ExampleNewSharedMemory() {
	m, err := mp.NewSharedMemory("", 64) // a generated name
	if err != nil {
		log.Fatal(err)
	}
	copy(m.Bytes(), "hello child")

	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	p := mp.NewProcess(exampleShmReader, exampleShmArgs{Name: m.Name(), Out: w})
	err = p.Start()
	w.Close()
	if err != nil {
		log.Fatal(err)
	}
	var report string
	if err := r.Recv(&report); err != nil {
		log.Fatal(err)
	}
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("child:", report)
	fmt.Printf("answer: %s\n", m.Bytes()[12:21])

	m.Close()
	if err := m.Unlink(); err != nil {
		log.Fatal(err)
	}
	_, err = mp.AttachSharedMemory(m.Name())
	fmt.Println("attach after Unlink:", errors.Is(err, os.ErrNotExist))
	// Output:
	// child: read "hello child" from a 64-byte block
	// answer: hi parent
	// attach after Unlink: true
}

// ---- RawValue and RawArray ----

type exampleRawArgs struct {
	Samples *mp.RawArray[float64]
	Filled  *mp.RawValue[int32] // how many samples the child wrote
}

// exampleRawFill writes into the shared memory directly: no lock is
// needed, because the parent reads only after the child has exited.
var exampleRawFill = mp.RegisterProc("example.rawFill", func(a exampleRawArgs) error {
	s := a.Samples.Slice()
	for i := range s {
		s[i] = float64(i) / 2
	}
	a.Filled.Store(int32(len(s)))
	return nil
})

// Python's RawArray and RawValue: shared memory without a lock, for data
// that one process writes at a time. Here a child fills them and the
// parent reads them after Join.
func ExampleRawArray() {
	samples, err := mp.NewRawArray[float64](4)
	if err != nil {
		log.Fatal(err)
	}
	defer samples.Close()
	filled, err := mp.NewRawValue[int32](0)
	if err != nil {
		log.Fatal(err)
	}
	defer filled.Close()

	p := mp.NewProcess(exampleRawFill, exampleRawArgs{Samples: samples, Filled: filled})
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	out := make([]float64, samples.Len())
	if err := samples.CopyTo(out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(filled.Load(), out)
	// Output:
	// 4 [0 0.5 1 1.5]
}

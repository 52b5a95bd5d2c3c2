//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"slices"
	"time"

	"github.com/go-mp/mp"
)

// The synchronisation objects travel to children inside their arguments;
// the children report over a Conn and the parent prints.

type exampleSemArgs struct {
	Sem *mp.Semaphore
	Out *mp.Conn
}

var exampleSemChild = mp.RegisterProc("example.sem", func(a exampleSemArgs) error {
	defer a.Out.Close()
	if err := a.Sem.Acquire(context.Background()); err != nil {
		return err
	}
	defer a.Sem.Release()
	return a.Out.Send("child got a unit")
})

func ExampleSemaphore() {
	sem, err := mp.NewSemaphore(2)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// Take both units: the child has to wait for one.
	sem.Acquire(ctx)
	sem.Acquire(ctx)
	fmt.Println("parent holds 2 units; another:", sem.TryAcquire())

	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	p := mp.NewProcess(exampleSemChild, exampleSemArgs{Sem: sem, Out: w})
	err = p.Start()
	w.Close()
	if err != nil {
		log.Fatal(err)
	}
	sem.Release() // let the child in
	var msg string
	if err := r.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg)
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("value:", sem.Value()) // the child gave its unit back
	// Output:
	// parent holds 2 units; another: false
	// child got a unit
	// value: 1
}

type exampleEventArgs struct {
	Ready *mp.Event
	Out   *mp.Conn
}

var exampleEventChild = mp.RegisterProc("example.event", func(a exampleEventArgs) error {
	defer a.Out.Close()
	if err := a.Out.Send("child waits"); err != nil {
		return err
	}
	if err := a.Ready.Wait(context.Background()); err != nil {
		return err
	}
	return a.Out.Send("child saw the event")
})

func ExampleEvent() {
	ready, err := mp.NewEvent()
	if err != nil {
		log.Fatal(err)
	}
	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	p := mp.NewProcess(exampleEventChild, exampleEventArgs{Ready: ready, Out: w})
	err = p.Start()
	w.Close()
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	r.Recv(&msg)
	fmt.Println(msg)
	ready.Set()
	r.Recv(&msg)
	fmt.Println(msg)
	if err := p.Join(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("set:", ready.IsSet())
	// Output:
	// child waits
	// child saw the event
	// set: true
}

type exampleCondArgs struct {
	Cond  *mp.Condition
	Items *mp.Semaphore // the state the Condition guards: items ready
	ID    int
	Out   *mp.Conn
}

var exampleCondChild = mp.RegisterProc("example.cond", func(a exampleCondArgs) error {
	defer a.Out.Close()
	ctx := context.Background()
	if err := a.Cond.Acquire(ctx); err != nil {
		return err
	}
	defer a.Cond.Release()
	if err := a.Out.Send(fmt.Sprintf("consumer %d waits", a.ID)); err != nil {
		return err
	}
	// Wait until there is an item, then take it, with the lock held.
	if err := a.Cond.WaitFor(ctx, func() bool { return a.Items.Value() > 0 }); err != nil {
		return err
	}
	a.Items.TryAcquire()
	return a.Out.Send(fmt.Sprintf("consumer %d took an item", a.ID))
})

func ExampleCondition() {
	cond, err := mp.NewCondition(nil) // over a new RLock
	if err != nil {
		log.Fatal(err)
	}
	items, err := mp.NewSemaphore(0)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var conns []*mp.Conn
	var procs []*mp.Process
	for id := 1; id <= 2; id++ {
		r, w, err := mp.Pipe(false)
		if err != nil {
			log.Fatal(err)
		}
		defer r.Close()
		p := mp.NewProcess(exampleCondChild, exampleCondArgs{Cond: cond, Items: items, ID: id, Out: w})
		err = p.Start()
		w.Close()
		if err != nil {
			log.Fatal(err)
		}
		var msg string
		r.Recv(&msg)
		fmt.Println(msg)
		conns, procs = append(conns, r), append(procs, p)
	}
	// Produce two items and wake the consumers.
	cond.Acquire(ctx)
	items.Release()
	items.Release()
	cond.NotifyAll()
	cond.Release()

	var got []string
	for _, r := range conns {
		var msg string
		r.Recv(&msg)
		got = append(got, msg)
	}
	slices.Sort(got)
	for _, msg := range got {
		fmt.Println(msg)
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("items left:", items.Value())
	// Output:
	// consumer 1 waits
	// consumer 2 waits
	// consumer 1 took an item
	// consumer 2 took an item
	// items left: 0
}

type exampleBarrierArgs struct {
	Barrier *mp.Barrier
	Out     *mp.Conn
}

var exampleBarrierChild = mp.RegisterProc("example.barrier", func(a exampleBarrierArgs) error {
	defer a.Out.Close()
	i, err := a.Barrier.Wait(context.Background())
	if err != nil {
		return err
	}
	return a.Out.Send(i)
})

// exampleBarrierOpened is the barrier's action: the last party to arrive
// runs it, in its own process, before anyone leaves.
var exampleBarrierOpened = mp.RegisterProc("example.barrierOpened", func(struct{}) error {
	return nil
})

func ExampleBarrier() {
	// The parent and two children meet at the barrier.
	b, err := mp.NewBarrier(3, exampleBarrierOpened, 0)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var conns []*mp.Conn
	var procs []*mp.Process
	for range 2 {
		r, w, err := mp.Pipe(false)
		if err != nil {
			log.Fatal(err)
		}
		defer r.Close()
		p := mp.NewProcess(exampleBarrierChild, exampleBarrierArgs{Barrier: b, Out: w})
		err = p.Start()
		w.Close()
		if err != nil {
			log.Fatal(err)
		}
		conns, procs = append(conns, r), append(procs, p)
	}
	mine, err := b.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	indices := []int{mine}
	for _, r := range conns {
		var i int
		r.Recv(&i)
		indices = append(indices, i)
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			log.Fatal(err)
		}
	}
	slices.Sort(indices)
	fmt.Println("arrival indices:", indices)
	fmt.Println("parties:", b.Parties(), "broken:", b.Broken())
	// Output:
	// arrival indices: [0 1 2]
	// parties: 3 broken: false
}

type exampleLockArgs struct {
	Lock *mp.Lock
	Out  *mp.Conn
}

// exampleLockChild takes the lock, says so, and keeps it while the parent
// keeps its end of the pipe open.
var exampleLockChild = mp.RegisterProc("example.lock", func(a exampleLockArgs) error {
	defer a.Out.Close()
	if err := a.Lock.Acquire(context.Background()); err != nil {
		return err
	}
	defer a.Lock.Release()
	if err := a.Out.Send("child has the lock"); err != nil {
		return err
	}
	_, err := a.Out.RecvBytes(0) // io.EOF once the parent closes its end
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
})

// A Lock passed to a child excludes across both processes: while the
// child holds it, the parent cannot take it.
func ExampleLock() {
	lock, err := mp.NewLock()
	if err != nil {
		log.Fatal(err)
	}
	parentEnd, childEnd, err := mp.Pipe(true)
	if err != nil {
		log.Fatal(err)
	}
	p := mp.NewProcess(exampleLockChild, exampleLockArgs{Lock: lock, Out: childEnd})
	err = p.Start()
	childEnd.Close()
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	if err := parentEnd.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg)
	fmt.Println("locked:", lock.Locked(), "parent gets it:", lock.TryAcquire())

	parentEnd.Close() // the child releases the lock and returns
	ctx := context.Background()
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after the child:", lock.TryAcquire())
	fmt.Println(lock.Release())
	// Output:
	// child has the lock
	// locked: true parent gets it: false
	// after the child: true
	// <nil>
}

// exampleLockKilled takes the lock and never releases it: the parent kills
// it while it holds the lock.
var exampleLockKilled = mp.RegisterProc("example.lockKilled", func(a exampleLockArgs) error {
	defer a.Out.Close()
	if err := a.Lock.Acquire(context.Background()); err != nil {
		return err
	}
	if err := a.Out.Send("holding"); err != nil {
		return err
	}
	_, err := a.Out.RecvBytes(0) // until killed
	return err
})

// A lock whose holder died is not lost: the next Acquire takes it over and
// says so with an *OwnerDiedError, because what the lock protects may have
// been left half-updated. The lock is held when that error is returned.
func ExampleOwnerDiedError() {
	lock, err := mp.NewLock()
	if err != nil {
		log.Fatal(err)
	}
	parentEnd, childEnd, err := mp.Pipe(true)
	if err != nil {
		log.Fatal(err)
	}
	defer parentEnd.Close()
	p := mp.NewProcess(exampleLockKilled, exampleLockArgs{Lock: lock, Out: childEnd})
	err = p.Start()
	childEnd.Close()
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	if err := parentEnd.Recv(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println("child is", msg)
	pid := p.Pid()
	p.Kill() // SIGKILL: the child has no chance to release the lock
	fmt.Println(p.Join(context.Background()) != nil)
	p.Close()

	// A deadline only bounds the wait; the takeover comes first.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = lock.Acquire(ctx)
	var died *mp.OwnerDiedError
	if errors.As(err, &died) {
		fmt.Println("taken over from the dead child:", died.Pid == pid)
	}
	fmt.Println(errors.Is(err, mp.ErrOwnerDied), lock.Locked())
	// Repair what the lock protects here, then:
	fmt.Println(lock.Release())
	// Output:
	// child is holding
	// true
	// taken over from the dead child: true
	// true true
	// <nil>
}

// An RLock may be taken again by the goroutine that holds it, and is free
// once released as many times.
func ExampleRLock() {
	r, err := mp.NewRLock()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	r.Acquire(ctx)
	r.Acquire(ctx) // the holder again: no deadlock
	fmt.Println(r.Held())
	r.Release()
	fmt.Println(r.Held())
	r.Release()
	fmt.Println(r.Held())
	fmt.Println(errors.Is(r.Release(), mp.ErrNotHeld))
	// Output:
	// true 2
	// true 1
	// false 0
	// true
}

// A BoundedSemaphore refuses a Release that would take it above its
// initial value: a unit given back twice is a bug, reported at once.
func ExampleBoundedSemaphore() {
	sem, err := mp.NewBoundedSemaphore(2)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	sem.Acquire(ctx)
	fmt.Println("value:", sem.Value())
	fmt.Println(sem.Release())
	err = sem.Release()
	fmt.Println(errors.Is(err, mp.ErrReleasedTooManyTimes), "value:", sem.Value())
	// Output:
	// value: 1
	// <nil>
	// true value: 2
}

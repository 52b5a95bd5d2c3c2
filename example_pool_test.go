//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-mp/mp"
)

// Pool tasks are registered functions: the workers are this binary
// re-executed, and find them by name.
var examplePoolSquare = mp.Register("example.pool.square", func(x int) (int, error) {
	if x < 0 {
		return 0, fmt.Errorf("negative %d", x)
	}
	return x * x, nil
})

// Python's
//
//	with Pool(2) as pool:
//	    print(pool.map(square, range(10)))
func ExampleFunc_Map() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	squares, err := examplePoolSquare.Map(ctx, pool, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares)

	// Imap reads its items lazily and yields the results in order.
	var more []int
	for v, err := range examplePoolSquare.Imap(ctx, pool, slices.Values([]int{10, 11, 12}), 1) {
		if err != nil {
			log.Fatal(err)
		}
		more = append(more, v)
	}
	fmt.Println(more)

	pool.Close()
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// [0 1 4 9 16 25 36 49 64 81]
	// [100 121 144]
}

// ApplyAsync returns at once; its callbacks run in this process when the
// result is back, one at a time.
func ExampleFunc_ApplyAsync() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	errs := make(chan error, 1)
	ok := examplePoolSquare.ApplyAsync(ctx, pool, 12, nil, nil)
	bad := examplePoolSquare.ApplyAsync(ctx, pool, -1, nil, func(err error) { errs <- err })

	pool.Close() // no more work
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err) // every worker has exited: all results are ready
	}
	v, err := ok.Get(ctx)
	fmt.Println(v, err)
	_, err = bad.Get(ctx)
	fmt.Println(err == <-errs)
	// Output:
	// 144 <nil>
	// true
}

// WithProgress reports how many items are done as chunks finish.
func ExampleWithProgress() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		pool.Close()
		pool.Join(context.Background())
	}()
	_, err = examplePoolSquare.Map(context.Background(), pool, make([]int, 6), 2,
		mp.WithProgress(func(done, total int) { fmt.Printf("%d/%d\n", done, total) }))
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// 2/6
	// 4/6
	// 6/6
}

// Python's ProcessPoolExecutor:
//
//	with ProcessPoolExecutor(2) as ex:
//	    fut = ex.submit(square, 7)
//	    print(fut.result())
//	    print(list(ex.map(square, range(5))))
func ExampleNewExecutor() {
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	fut := examplePoolSquare.Submit(ctx, ex, 7)
	// The callback runs in this process, on a goroutine of the pool, once
	// the future is done.
	called := make(chan int, 1)
	fut.AddDoneCallback(func(f *mp.Future[int]) {
		v, _ := f.Result(ctx) // done: does not wait
		called <- v
	})
	v, err := fut.Result(ctx)
	fmt.Println("result:", v, err)
	fmt.Println("callback saw:", <-called)

	var mapped []int
	for v, err := range examplePoolSquare.SubmitMap(ctx, ex, []int{0, 1, 2, 3, 4}, 2) {
		if err != nil {
			log.Fatal(err)
		}
		mapped = append(mapped, v)
	}
	fmt.Println(mapped)

	futs := []*mp.Future[int]{examplePoolSquare.Submit(ctx, ex, 2), examplePoolSquare.Submit(ctx, ex, -2)}
	done, notDone, _ := mp.WaitFutures(ctx, futs, mp.AllCompleted)
	fmt.Println(len(done), "done,", len(notDone), "not done")
	fmt.Println(futs[1].Err(ctx) != nil)

	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(examplePoolSquare.Submit(ctx, ex, 1).Err(ctx))
	// Output:
	// result: 49 <nil>
	// callback saw: 49
	// [0 1 4 9 16]
	// 2 done, 0 not done
	// true
	// mp: cannot schedule new futures after shutdown
}

// ImapUnordered yields each result as soon as it is back, whatever the
// order of the items: sort them if the order matters.
func ExampleFunc_ImapUnordered() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var got []int
	for v, err := range examplePoolSquare.ImapUnordered(ctx, pool, slices.Values([]int{1, 2, 3, 4, 5, 6}), 1) {
		if err != nil {
			log.Fatal(err)
		}
		got = append(got, v)
	}
	slices.Sort(got)
	fmt.Println(got)

	pool.Close()
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// [1 4 9 16 25 36]
}

// WithProgressBar draws a bar, as tqdm does in Python; here on a buffer,
// to show its successive states (on a terminal, each one overwrites the
// last).
func ExampleWithProgressBar() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var bar bytes.Buffer
	if _, err := examplePoolSquare.Map(ctx, pool, make([]int, 6), 2, mp.WithProgressBar(&bar)); err != nil {
		log.Fatal(err)
	}
	// The bar is redrawn with a carriage return after each chunk.
	for _, state := range strings.Split(strings.TrimSpace(bar.String()), "\r") {
		fmt.Println(state)
	}

	pool.Close()
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// example.pool.square   0% [                              ] 0/6
	// example.pool.square  33% [========>                     ] 2/6
	// example.pool.square  66% [==================>           ] 4/6
	// example.pool.square 100% [==============================] 6/6
}

// exampleHang never returns: only its worker's death ends it.
var exampleHang = mp.Register("example.pool.hang", func(struct{}) (int, error) {
	time.Sleep(time.Hour)
	return 0, nil
})

// A task that runs past PoolOptions.TaskTimeout fails with ErrTaskTimeout:
// its worker is killed and replaced, and the pool goes on.
func ExamplePoolOptions_taskTimeout() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 1, TaskTimeout: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	_, err = exampleHang.Apply(ctx, pool, struct{}{})
	fmt.Println(errors.Is(err, mp.ErrTaskTimeout))

	v, err := examplePoolSquare.Apply(ctx, pool, 5) // on the new worker
	fmt.Println(v, err)

	pool.Close()
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// true
	// 25 <nil>
}

// exampleDie kills its own worker, as the kernel's OOM killer or a crash
// would.
var exampleDie = mp.Register("example.pool.die", func(struct{}) (int, error) {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Hour) // the signal is on its way
	return 0, nil
})

// A worker that dies fails exactly the task it was running, with a
// *WorkerLostError (errors.Is ErrWorkerLost); the pool replaces it and the
// other tasks are not affected.
func ExampleWorkerLostError() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	_, err = exampleDie.Apply(ctx, pool, struct{}{})
	var lost *mp.WorkerLostError
	if errors.As(err, &lost) {
		fmt.Println("worker lost, exit code", lost.ExitCode)
	}
	fmt.Println(errors.Is(err, mp.ErrWorkerLost))

	squares, err := examplePoolSquare.Map(ctx, pool, []int{1, 2, 3}, 1)
	fmt.Println(squares, err)

	pool.Close()
	if err := pool.Join(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// worker lost, exit code -9
	// true
	// [1 4 9] <nil>
}

// AsCompleted yields futures as they finish, not in the order given. With
// one worker the tasks finish in the order they were submitted, so here
// the futures come out in the reverse of the order they are passed in.
func ExampleAsCompleted() {
	ex, err := mp.NewExecutor(mp.PoolOptions{Processes: 1})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var futs []*mp.Future[int]
	for _, x := range []int{1, 2, -3} {
		futs = append(futs, examplePoolSquare.Submit(ctx, ex, x))
	}
	slices.Reverse(futs)
	for fut, err := range mp.AsCompleted(ctx, futs...) {
		if err != nil {
			log.Fatal(err) // ctx ended: not an error of the futures
		}
		v, err := fut.Result(ctx) // done: does not wait
		var remote *mp.RemoteError
		if errors.As(err, &remote) {
			fmt.Println("failed in the worker:", remote.Message)
			continue
		}
		fmt.Println(v, err)
	}

	if err := ex.Shutdown(ctx, mp.ShutdownOptions{}); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 1 <nil>
	// 4 <nil>
	// failed in the worker: negative -3
}

// examplePowArgs holds what Python's starmap would pass as separate
// arguments.
type examplePowArgs struct{ Base, Exp int }

var examplePow = mp.Register("example.pow", func(a examplePowArgs) (int, error) {
	r := 1
	for range a.Exp {
		r *= a.Base
	}
	return r, nil
})

// Python's pool.starmap(pow, [(2, 3), (3, 2), (10, 0)]) is a Map over
// structs: a target has one argument, and a struct carries several.
func ExampleFunc_Map_starmap() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		pool.Close()
		pool.Join(context.Background())
	}()
	powers, err := examplePow.Map(context.Background(), pool, []examplePowArgs{{2, 3}, {3, 2}, {10, 0}}, 0)
	fmt.Println(powers, err)
	// Output:
	// [8 9 1] <nil>
}

//go:build linux

package mp_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-mp/mp"
)

// exampleServe works until its ctx is cancelled, then cleans up and
// returns: its child exits as usual, with code 0.
var exampleServe = mp.RegisterProcCtx("example.serve", func(ctx context.Context, out *mp.Conn) error {
	defer out.Close()
	out.Send("serving")
	<-ctx.Done()
	return out.Send("stopping cleanly: " + ctx.Err().Error())
})

// A target registered with RegisterCtx sees Terminate as the cancellation
// of its ctx, and has the Process's CancelGrace to return.
func ExampleRegisterCtx() {
	r, w, err := mp.Pipe(false)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	p := mp.NewProcess(exampleServe, w)
	err = p.Start()
	w.Close()
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	r.Recv(&msg)
	fmt.Println(msg)

	p.Terminate() // SIGTERM: the target's ctx is cancelled
	r.Recv(&msg)
	fmt.Println(msg)
	err = p.Join(context.Background())
	code, _ := p.ExitCode()
	fmt.Println("exit code", code, "error", err)
	// Output:
	// serving
	// stopping cleanly: context canceled
	// exit code 0 error <nil>
}

// exampleWait waits for its ctx (or a minute) before it answers.
var exampleWait = mp.RegisterCtx("example.wait", func(ctx context.Context, n int) (int, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Minute):
		return n, nil
	}
})

// Cancelling the ctx given to ApplyAsync cancels the call: its result is
// context.Canceled at once, and the task's ctx in the worker is cancelled,
// so the worker is free for the next call.
func ExampleFunc_ApplyAsync_cancel() {
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		pool.Close()
		pool.Join(context.Background())
	}()
	ctx, cancel := context.WithCancel(context.Background())
	res := exampleWait.ApplyAsync(ctx, pool, 7, nil, nil)
	time.Sleep(10 * time.Millisecond) // let it start (or not: either way it is cancelled)
	cancel()
	_, err = res.Get(context.Background())
	fmt.Println(err)

	v, err := examplePoolSquare.Apply(context.Background(), pool, 8)
	fmt.Println(v, err)
	// Output:
	// context canceled
	// 64 <nil>
}

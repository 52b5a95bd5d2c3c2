package mp_test

import (
	"context"
	"fmt"
	"log"

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

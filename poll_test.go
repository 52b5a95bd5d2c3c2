//go:build linux

package mp_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type pollArgs struct {
	In, Out *mp.Conn
	Timeout time.Duration
}

// pollOnly reports "polling" on Out, polls In and reports what it saw,
// receiving nothing.
var pollOnly = mp.RegisterProc("test.conn.pollOnly", func(a pollArgs) error {
	if err := a.Out.Send("polling"); err != nil {
		return err
	}
	ready, err := a.In.Poll(a.Timeout)
	return a.Out.Send(fmt.Sprint(ready, err))
})

// Poll only looks: a child that polls a Conn it shares with us, and exits
// without receiving, leaves the message for us. The message is there when
// the child polls, or (late) sent once the child is about to poll.
func TestPollInChildDoesNotConsume(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		late    bool
	}{{0, false}, {5 * time.Second, false}, {-1, false}, {5 * time.Second, true}, {-1, true}} {
		t.Run(fmt.Sprint(tc.timeout, map[bool]string{true: "/late"}[tc.late]), func(t *testing.T) {
			r, w := pipe(t, false)
			reports, out := pipe(t, false)
			if !tc.late {
				if err := w.Send("hello"); err != nil {
					t.Fatal(err)
				}
			}
			p := start(t, mp.NewProcess(pollOnly, pollArgs{In: r, Out: out, Timeout: tc.timeout}))
			out.Close()
			var saw string
			if err := reports.Recv(&saw); err != nil || saw != "polling" {
				t.Fatalf("the child's report = %q, %v", saw, err)
			}
			if tc.late {
				if err := w.Send("hello"); err != nil {
					t.Fatal(err)
				}
			}
			if err := reports.Recv(&saw); err != nil || saw != "true <nil>" {
				t.Fatalf("the child's Poll = %q, %v", saw, err)
			}
			if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			w.Close() // so that a lost message shows as io.EOF, not a hang
			var got string
			if err := r.Recv(&got); err != nil || got != "hello" {
				t.Fatalf("Recv after the child polled = %q, %v", got, err)
			}
		})
	}
}

// Poll waiting without limit returns ErrClosed when the Conn is closed.
func TestPollWokenByClose(t *testing.T) {
	_, b := pipe(t, true)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Poll(-1)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	b.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, mp.ErrClosed) {
			t.Fatalf("Poll on a Conn closed meanwhile = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Poll")
	}
}

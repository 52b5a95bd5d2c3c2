//go:build linux

package manager_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
	"golang.org/x/sys/unix"
)

// BenchmarkQueuePutGet is one Put and one Get of a manager Queue per
// iteration, over the default unix transport (rings) and over TCP: the
// cost of the Get's acknowledgement shows here.
func BenchmarkQueuePutGet(b *testing.B) {
	for _, network := range []string{"unix", "tcp"} {
		b.Run(network, func(b *testing.B) {
			ctx := context.Background()
			m, err := manager.Start(ctx, &manager.Options{Network: network})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			q, err := manager.NewQueue[int](ctx, m, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := q.Put(ctx, i); err != nil {
					b.Fatal(err)
				}
				if _, err := q.Get(ctx); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

type getterArgs struct {
	Q    *manager.Queue[int]
	Out  *mp.Conn // the child reports there
	Park bool     // park the Get once its request is sent, before the reply is read
}

// getOne takes one item from a queue, reports it and waits to be killed.
// With Park, it reports instead that its Get's request has left, and
// never reads the reply.
var getOne = mp.RegisterProc("manager_test.getOne", func(a getterArgs) error {
	ctx := context.Background()
	if a.Park {
		return parkedGet(ctx, a.Q, a.Out)
	}
	v, err := a.Q.Get(ctx)
	if err != nil {
		return err
	}
	if err := a.Out.Send(v); err != nil {
		return err
	}
	time.Sleep(time.Hour)
	return nil
})

// startGetter starts getOne on q; the caller kills it.
func startGetter(t *testing.T, q *manager.Queue[int], park bool) (*mp.Process, *mp.Conn) {
	t.Helper()
	r, w, err := mp.Pipe(false)
	check(t, err)
	t.Cleanup(func() { r.Close() })
	p := mp.NewProcess(getOne, getterArgs{Q: q, Out: w, Park: park})
	err = p.Start()
	w.Close()
	check(t, err)
	t.Cleanup(func() {
		p.Kill()
		p.Join(context.Background())
	})
	return p, r
}

// newTestQueue makes a Queue, or a JoinableQueue (returned too).
func newTestQueue(t *testing.T, m *manager.Manager, joinable bool) (*manager.Queue[int], *manager.JoinableQueue[int]) {
	t.Helper()
	ctx := testCtx(t)
	if joinable {
		jq := must[*manager.JoinableQueue[int]](t)(manager.NewJoinableQueue[int](ctx, m, 0))
		return &jq.Queue, jq
	}
	return must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0)), nil
}

// stopProcess sends SIGSTOP to pid and waits until every thread of it has
// stopped: kill returns before a thread running on another CPU has.
func stopProcess(t *testing.T, pid int) {
	t.Helper()
	check(t, unix.Kill(pid, unix.SIGSTOP))
	waitFor(t, func() bool {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		check(t, err)
		for _, task := range tasks {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				return false
			}
			// The state follows the command, in parentheses.
			i := bytes.LastIndexByte(stat, ')')
			if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
				return false
			}
		}
		return true
	})
}

// killAndWait kills p with SIGKILL and waits until the server has ended
// its session (this test's is the only one left).
func killAndWait(t *testing.T, m *manager.Manager, p *mp.Process) {
	t.Helper()
	check(t, unix.Kill(p.Pid(), unix.SIGKILL))
	p.Join(testCtx(t))
	waitFor(t, func() bool { st, err := m.Stats(context.Background()); check(t, err); return st.Clients == 1 })
}

// TestQueueGetterDiesBeforeTheReply kills a getter whose Get the server
// has answered but who never read the reply, on both paths: the getter
// waited in Get when the item was put ("waiting": it is SIGSTOPped while
// the server shows it waiting, then the item is put), or the item was in
// the queue when the Get arrived ("queued": the Get's request has left
// and the child is SIGSTOPped before it reads the reply). The item is
// back at the front of the queue, for a Queue and a JoinableQueue (where
// it still counts as unfinished), over unix (rings) and TCP.
func TestQueueGetterDiesBeforeTheReply(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		for _, joinable := range []bool{false, true} {
			for _, path := range []string{"waiting", "queued"} {
				t.Run(fmt.Sprintf("%s/joinable=%v/%s", network, joinable, path), func(t *testing.T) {
					ctx := testCtx(t)
					m := startOn(t, network)
					q, jq := newTestQueue(t, m, joinable)
					if path == "queued" {
						check(t, q.Put(ctx, 42))
					}
					p, out := startGetter(t, q, path == "queued")
					switch path {
					case "waiting":
						waitFor(t, func() bool { return serverWaiters(t, m) == 1 })
						stopProcess(t, p.Pid())
						check(t, q.Put(ctx, 42))
						// The server has granted the item and written the reply.
						waitFor(t, func() bool { return serverWaiters(t, m) == 0 })
					case "queued":
						var sent int
						check(t, out.Recv(&sent))
						stopProcess(t, p.Pid())
						// The server has taken the item and answered.
						waitFor(t, func() bool { return must[int](t)(q.Qsize(ctx)) == 0 })
					}
					check(t, q.Put(ctx, 43))
					killAndWait(t, m, p)
					v, err := q.TryGet(ctx)
					if err != nil {
						t.Fatalf("the dead getter's item is lost: TryGet: %v", err)
					}
					equal(t, "first item after the getter died", v, 42)
					equal(t, "second item", must[int](t)(q.TryGet(ctx)), 43)
					if jq != nil {
						check(t, jq.TaskDone(ctx))
						check(t, jq.TaskDone(ctx))
						check(t, jq.Join(ctx))
						if err := jq.TaskDone(ctx); !errors.Is(err, mp.ErrTaskDone) {
							t.Errorf("a third TaskDone: %v, want mp.ErrTaskDone", err)
						}
					}
				})
			}
		}
	}
}

// TestQueueGetReturnedNotRedelivered kills a getter after its Get returned
// the item (it reported the item to the parent): the item is not
// delivered again.
func TestQueueGetReturnedNotRedelivered(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ctx := testCtx(t)
			m := startOn(t, network)
			q, _ := newTestQueue(t, m, false)
			check(t, q.Put(ctx, 42))
			p, out := startGetter(t, q, false)
			var got int
			check(t, out.Recv(&got))
			equal(t, "the child's item", got, 42)
			killAndWait(t, m, p)
			if v, err := q.TryGet(ctx); !errors.Is(err, mp.ErrEmpty) {
				t.Errorf("TryGet after the getter died: %v, %v; want mp.ErrEmpty (the item was the getter's)", v, err)
			}
		})
	}
}

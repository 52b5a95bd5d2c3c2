//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/ringconn"
)

// The tests of issue 13 point 2's rings between a pool and its workers:
// a worker killed inside writing a result, a worker that writes bad
// indices into its rings, full rings both ways, and a reader (a worker)
// that dies while the pool waits for room in its ring.

// The layout of a link's memory (see internal/ringconn): two rings, each a
// header of words (the head at 0, the tail at 64) then RingSize bytes of
// data. The first is written by the worker (the side that did not make
// the memory), the second by the pool.
const (
	ringHeader   = ringconn.MemSize/2 - ringconn.RingSize
	workerRing   = 0                    // the worker writes results here
	poolRing     = ringconn.MemSize / 2 // the pool writes tasks here
	ringHeadWord = 0
	ringTailWord = 64
)

func ringWord(mem []byte, ring, word int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[ring+word])) //nolint:gosec // inside the header
}

// In a worker: its socket and ring memory, for the hostile targets.
var (
	linkMu   sync.Mutex
	linkSock *mp.Conn
	linkMem  []byte
)

func init() {
	mp.SetWorkerLinkHookForTest(func(sock *mp.Conn, mem []byte) {
		linkMu.Lock()
		linkSock, linkMem = sock, mem
		linkMu.Unlock()
	})
}

type ringJob struct {
	Tracker string
	N       int
	Size    int    // of the result
	Corrupt string // "head" or "tail": write a bad index into that ring
	Pad     []byte // to make the task's message large
}

// ringPattern is the result of the job n of size bytes.
func ringPattern(n, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + n)
	}
	return b
}

var ringTask = mp.Register("test.ringTask", func(j ringJob) ([]byte, error) {
	mem, err := attachTracked(j.Tracker)
	if err != nil {
		return nil, err
	}
	b := mem.Bytes()
	trackWord(b, j.N, 2).Store(uint32(syscall.Getpid()))
	trackWord(b, j.N, 0).Add(1)
	if j.Corrupt != "" {
		linkMu.Lock()
		sock, ring := linkSock, linkMem
		linkMu.Unlock()
		switch j.Corrupt {
		case "head":
			// The head of the results' ring far past its tail, and a
			// doorbell, in case the pool's reader sleeps.
			ringWord(ring, workerRing, ringHeadWord).Store(1 << 40)
			sock.SendBytes(nil)
		case "tail":
			// The tail of the tasks' ring, which this side writes, past
			// anything the pool wrote: the pool sees it once it needs room.
			ringWord(ring, poolRing, ringTailWord).Store(1 << 40)
		}
		time.Sleep(time.Minute) // the pool kills this worker
	}
	trackWord(b, j.N, 1).Add(1)
	return ringPattern(j.N, j.Size), nil
})

// warmPool returns a pool of one worker that has run a few quick tasks
// (so that it is given several at once when the queue is long), and the
// worker's pid.
func warmPool(t *testing.T, ctx context.Context) (*mp.Pool, int) {
	t.Helper()
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	for range 30 {
		if _, err := double.Apply(ctx, pool, 1); err != nil {
			t.Fatal(err)
		}
	}
	return pool, pool.Stats()[0].Pid
}

// submitPadded submits the tasks 1 to n-1 of tr, each with an argument of
// 40 KiB: two fill a ring.
func submitPadded(ctx context.Context, pool *mp.Pool, tr *tracker, n int) []*mp.AsyncResult[[]byte] {
	res := make([]*mp.AsyncResult[[]byte], n)
	for i := 1; i < n; i++ {
		res[i] = ringTask.ApplyAsync(ctx, pool, ringJob{Tracker: tr.mem.Name(), N: i, Size: 10, Pad: make([]byte, 40<<10)}, nil, nil)
	}
	return res
}

// checkPadded checks that each task of submitPadded succeeded, and
// started once.
func checkPadded(t *testing.T, ctx context.Context, tr *tracker, res []*mp.AsyncResult[[]byte]) {
	t.Helper()
	for i := 1; i < len(res); i++ {
		if got, err := res[i].Get(ctx); err != nil || !bytes.Equal(got, ringPattern(i, 10)) {
			t.Errorf("task %d: %v, %v", i, got, err)
		}
		if s := tr.starts(i); s != 1 {
			t.Errorf("task %d started %d times", i, s)
		}
	}
}

// A worker stopped, then killed, inside writing a result larger than its
// ring (the ring full, the pool's reader held back until then, then let
// read part of it): a result that fits the ledger was published there
// before it was written, and is delivered whole, once; one too large for
// the ledger counts as running until all of it is in the ring, so its
// task fails with a *WorkerLostError. Nothing runs twice.
func TestPoolWorkerKilledMidResult(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		delivered bool
	}{
		{"in the ledger", 256 << 10, true},
		{"too large for the ledger", 600 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxTimeout(t, 60*time.Second)
			tr := newTracker(t, 2)
			var hold atomic.Bool
			release := make(chan struct{})
			var once sync.Once
			letGo := func() { once.Do(func() { close(release) }) }
			mp.SetPoolReadHookForTest(func(int) {
				if hold.Load() {
					<-release
				}
			})
			t.Cleanup(func() { mp.SetPoolReadHookForTest(nil) })
			pool := newPool(t, mp.PoolOptions{Processes: 1})
			t.Cleanup(letGo) // runs before the pool's: the reader must not stay held
			if _, err := double.Apply(ctx, pool, 1); err != nil {
				t.Fatal(err)
			}
			pid := pool.Stats()[0].Pid
			ring := mp.PoolRingForTest(pool, pid)
			head, tail := ringWord(ring, workerRing, ringHeadWord), ringWord(ring, workerRing, ringTailWord)

			hold.Store(true)
			r := ringTask.ApplyAsync(ctx, pool, ringJob{Tracker: tr.mem.Name(), Size: tc.size}, nil, nil)
			// Inside writing: the ring full, the worker waiting for room.
			waitFor(t, func() bool { return head.Load()-tail.Load() == ringconn.RingSize })
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return procState(pid) == 'T' })
			before := tail.Load()
			letGo()
			waitFor(t, func() bool { return tail.Load() != before }) // the reader has part of it
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			got, err := r.Get(ctx)
			if tc.delivered {
				if err != nil || !bytes.Equal(got, ringPattern(0, tc.size)) {
					t.Fatalf("the result in the ledger: %d bytes, %v; want %d bytes, whole", len(got), err, tc.size)
				}
			} else {
				var lost *mp.WorkerLostError
				if !errors.As(err, &lost) || lost.Pid != pid || lost.ExitCode != -9 {
					t.Fatalf("a result too large for the ledger, cut: %d bytes, %v; want a *WorkerLostError of pid %d", len(got), err, pid)
				}
			}
			if s := tr.starts(0); s != 1 {
				t.Fatalf("the task started %d times", s)
			}
			// The pool goes on with a new worker.
			if v, err := double.Apply(ctx, pool, 21); err != nil || v != 42 {
				t.Fatalf("after: %d, %v", v, err)
			}
		})
	}
}

// A worker that writes bad indices into its rings (the head of the ring
// it writes, the tail of the ring it reads) is killed: its running task
// fails with a *WorkerLostError, the tasks it held run elsewhere, once,
// and the pool goes on. Nothing panics or waits for ever.
func TestPoolWorkerCorruptRing(t *testing.T) {
	for _, where := range []string{"head", "tail"} {
		t.Run(where, func(t *testing.T) {
			ctx := ctxTimeout(t, 60*time.Second)
			const n = 41
			tr := newTracker(t, n)
			pool, pid := warmPool(t, ctx)
			bad := ringTask.ApplyAsync(ctx, pool, ringJob{Tracker: tr.mem.Name(), Corrupt: where}, nil, nil)
			waitFor(t, func() bool { return tr.starts(0) == 1 })
			// Tasks with large arguments: some go to the hostile worker,
			// queued behind its task, and fill the ring it no longer
			// reads, so the pool looks at its tail.
			res := submitPadded(ctx, pool, tr, n)
			_, err := bad.Get(ctx)
			var lost *mp.WorkerLostError
			if !errors.As(err, &lost) || lost.Pid != pid {
				t.Fatalf("the hostile worker's task: %v, want a *WorkerLostError of pid %d", err, pid)
			}
			checkPadded(t, ctx, tr, res)
		})
	}
}

// A worker stopped inside a task while the pool writes it tasks with
// large arguments (its ring full, the pool's writer waiting for room),
// then killed: the pool's writer gives up on the dead reader, the running
// task fails, and the tasks it had been given run on the new worker,
// once each.
func TestPoolRingDeadReader(t *testing.T) {
	ctx := ctxTimeout(t, 60*time.Second)
	const n = 41
	tr := newTracker(t, n)
	pool, pid := warmPool(t, ctx)
	ring := mp.PoolRingForTest(pool, pid)
	head, tail := ringWord(ring, poolRing, ringHeadWord), ringWord(ring, poolRing, ringTailWord)
	stopped := trackedTask.ApplyAsync(ctx, pool, trackJob{Tracker: tr.mem.Name(), N: 0, Stop: true}, nil, nil)
	waitFor(t, func() bool { return tr.starts(0) == 1 && procState(pid) == 'T' })
	res := submitPadded(ctx, pool, tr, n)
	waitFor(t, func() bool { return head.Load()-tail.Load() == ringconn.RingSize }) // the pool waits for room
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var lost *mp.WorkerLostError
	if _, err := stopped.Get(ctx); !errors.As(err, &lost) || lost.Pid != pid {
		t.Fatalf("the running task: %v, want a *WorkerLostError of pid %d", err, pid)
	}
	checkPadded(t, ctx, tr, res)
	if pool.Stats()[0].Pid == pid {
		t.Fatal("the dead worker was not replaced")
	}
}

//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

func newQueue[T any](t *testing.T, maxsize int) *mp.Queue[T] {
	t.Helper()
	q, err := mp.NewQueue[T](maxsize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestQueueBasics(t *testing.T) {
	q := newQueue[string](t, 2)
	ctx := context.Background()
	if _, err := q.TryGet(); !errors.Is(err, mp.ErrEmpty) {
		t.Fatalf("TryGet on empty = %v", err)
	}
	if !q.Empty() || q.Full() || q.Qsize() != 0 {
		t.Fatal("new queue not empty")
	}
	q.Put(ctx, "a")
	q.TryPut("b")
	if !q.Full() || q.Qsize() != 2 {
		t.Fatalf("Full=%v Qsize=%d", q.Full(), q.Qsize())
	}
	if err := q.TryPut("c"); !errors.Is(err, mp.ErrFull) {
		t.Fatalf("TryPut on full = %v", err)
	}
	if err := q.Put(ctxTimeout(t, 20*time.Millisecond), "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put on full = %v", err)
	}
	for _, want := range []string{"a", "b"} {
		if got, err := q.Get(ctx); err != nil || got != want {
			t.Fatalf("Get = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := q.Get(ctxTimeout(t, 20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on empty = %v", err)
	}
	// A blocked Get is woken by a Put.
	go func() { time.Sleep(20 * time.Millisecond); q.Put(ctx, "late") }()
	if got, err := q.Get(ctxTimeout(t, 5*time.Second)); err != nil || got != "late" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	// A blocked Put is woken by a Get.
	q.Put(ctx, "x")
	q.Put(ctx, "y")
	go func() { time.Sleep(20 * time.Millisecond); q.Get(ctx) }()
	if err := q.Put(ctxTimeout(t, 5*time.Second), "z"); err != nil {
		t.Fatal(err)
	}
	if _, err := mp.NewQueue[int](-1); err == nil {
		t.Error("negative maxsize accepted")
	}
	if err := newQueue[*mp.Lock](t, 0).Put(ctx, newLock(t)); !errors.Is(err, mp.ErrQueueHandles) {
		t.Errorf("Put of a Lock = %v", err)
	}
}

func TestQueueLargeItems(t *testing.T) {
	q := newQueue[[]byte](t, 0)
	ctx := context.Background()
	var items [][]byte
	for i, n := range []int{0, 1, 5 << 20, 100 << 10, 3 << 20, 7} {
		items = append(items, bytes.Repeat([]byte{byte('a' + i)}, n))
	}
	for k := 0; k < 3; k++ { // several rounds, to reuse freed chunks
		for _, it := range items {
			if err := q.Put(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		for i, want := range items {
			got, err := q.Get(ctx)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d item %d: %d bytes, %v", k, i, len(got), err)
			}
		}
	}
}

func TestQueueClose(t *testing.T) {
	q, err := mp.NewQueue[int](0)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { _, err := q.Get(context.Background()); errc <- err }()
	go func() { _, err := q.Get(context.Background()); errc <- err }() // waits for the consumer lock
	time.Sleep(30 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-errc:
			if !errors.Is(err, mp.ErrClosed) {
				t.Fatalf("blocked Get after Close = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not wake a blocked Get")
		}
	}
	if err := q.Put(context.Background(), 1); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("Put after Close = %v", err)
	}
	if _, err := q.TryGet(); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("TryGet after Close = %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

type queueArgs struct {
	Q     *mp.Queue[string]
	J     *mp.JoinableQueue[int]
	ID    int
	N     int
	Out   *mp.Conn // progress reports
	Mode  string
	Delay time.Duration
}

var queueWorker = mp.RegisterProc("test.queueWorker", func(a queueArgs) error {
	ctx := context.Background()
	switch a.Mode {
	case "produce":
		for i := 0; i < a.N; i++ {
			if err := a.Q.Put(ctx, fmt.Sprintf("%d:%d", a.ID, i)); err != nil {
				return err
			}
		}
		return nil // exits at once; the items stay in the queue
	case "consume":
		for i := 0; i < a.N; i++ {
			item, err := a.Q.Get(ctx)
			if err != nil {
				return err
			}
			if err := a.Out.Send(item); err != nil {
				return err
			}
		}
		return a.Out.Close()
	case "bigget": // report, then take one (huge) item
		a.Out.Send(os.Getpid())
		_, err := a.Q.Get(ctx)
		return err
	case "block": // report, then block in Get forever
		a.Out.Send(os.Getpid())
		_, err := a.Q.Get(ctx)
		return err
	case "joinconsume":
		for {
			v, err := a.J.Get(ctx)
			if err != nil {
				return err
			}
			time.Sleep(a.Delay)
			a.Out.Send(v)
			if err := a.J.TaskDone(); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("bad mode %q", a.Mode)
})

func TestQueueChildExitsWithoutReader(t *testing.T) {
	q := newQueue[string](t, 0)
	p := start(t, mp.NewProcess(queueWorker, queueArgs{Q: q, ID: 1, N: 50000, Mode: "produce"}))
	if err := p.Join(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("producer with no reader: %v", err)
	}
	if q.Qsize() != 50000 {
		t.Fatalf("Qsize = %d after the producer exited", q.Qsize())
	}
	for i := 0; i < 50000; i++ {
		got, err := q.TryGet()
		if want := fmt.Sprintf("1:%d", i); err != nil || got != want {
			t.Fatalf("item %d = %q, %v", i, got, err)
		}
	}
}

// TestQueueStress has 3 producer and 3 consumer processes on one bounded
// queue, and counts every item: none lost or duplicated, FIFO per producer.
func TestQueueStress(t *testing.T) {
	const producers, consumers, per = 3, 3, 3000
	q := newQueue[string](t, 100)
	var reports []*mp.Conn
	var procs []*mp.Process
	for i := 0; i < producers; i++ {
		procs = append(procs, start(t, mp.NewProcess(queueWorker, queueArgs{Q: q, ID: i, N: per, Mode: "produce"})))
	}
	for i := 0; i < consumers; i++ {
		r, w := pipe(t, false)
		procs = append(procs, start(t, mp.NewProcess(queueWorker, queueArgs{Q: q, N: producers * per / consumers, Out: w, Mode: "consume"})))
		w.Close()
		reports = append(reports, r)
	}
	seen := map[string]bool{}
	for _, r := range reports {
		last := map[int]int{}
		for {
			var item string
			if err := r.Recv(&item); err != nil {
				break
			}
			if seen[item] {
				t.Fatalf("item %s twice", item)
			}
			seen[item] = true
			var id, n int
			fmt.Sscanf(item, "%d:%d", &id, &n)
			if prev, ok := last[id]; ok && n <= prev {
				t.Fatalf("producer %d: %d after %d at one consumer", id, n, prev)
			}
			last[id] = n
		}
	}
	for _, p := range procs {
		if err := p.Join(ctxTimeout(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != producers*per || !q.Empty() {
		t.Fatalf("%d items seen of %d, queue empty %v", len(seen), producers*per, q.Empty())
	}
}

func TestQueueConsumerKilledWhileBlocked(t *testing.T) {
	q := newQueue[string](t, 0)
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(queueWorker, queueArgs{Q: q, Out: w, Mode: "block"}))
	w.Close()
	var pid int
	if err := r.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // let it block in Get
	p.Kill()
	p.Join(context.Background())
	ctx := ctxTimeout(t, 10*time.Second)
	if err := q.Put(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if got, err := q.Get(ctx); err != nil || got != "after" {
		t.Fatalf("Get after a consumer was killed = %q, %v", got, err)
	}
}

// stopProducerArgs: a producer that puts items 0..N-1 and stops itself at
// crash point StopAt in the put of item K.
type stopProducerArgs struct {
	Q      *mp.JoinableQueue[string]
	N, K   int
	StopAt string
}

var stopProducer = mp.RegisterProc("test.queue.stopProducer", func(a stopProducerArgs) error {
	mp.SetCrashPointForTest(stopAtNth(a.StopAt, a.K))
	for i := range a.N {
		if err := a.Q.Put(context.Background(), producerItem(i, a.K)); err != nil {
			return err
		}
	}
	return nil
})

// producerItem is item i of a stopProducer; item big spans several of the
// queue's chunks.
func producerItem(i, big int) string {
	if i == big {
		return strconv.Itoa(i) + ":" + strings.Repeat("x", 5<<19)
	}
	return strconv.Itoa(i)
}

// A producer killed in the middle of a Put: its item appears exactly once
// if the kill came after Put published it, else never; every item it put
// before comes out once, in order; the queue goes on, and a JoinableQueue
// counts only the items that appear.
func TestQueueProducerKilledInPut(t *testing.T) {
	const n, k = 10, 6
	for _, tc := range []struct {
		at      string
		appears bool
	}{{mp.CrashPutWritten, false}, {mp.CrashPutCommitted, true}} {
		t.Run(tc.at, func(t *testing.T) {
			j, err := mp.NewJoinableQueue[string](0)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			p := start(t, mp.NewProcess(stopProducer, stopProducerArgs{Q: j, N: n, K: k, StopAt: tc.at}))
			waitStopped(t, p.Pid())
			if held, _ := mp.QueueLocksHeld(&j.Queue); !held {
				t.Fatal("the producer lock is not held at the crash point")
			}
			p.Kill()
			p.Join(context.Background())
			ctx := ctxTimeout(t, 10*time.Second)
			// Another producer takes over the dead one's lock.
			if err := j.Put(ctx, "after"); err != nil {
				t.Fatalf("Put after a producer died in Put: %v", err)
			}
			var want []string
			for i := range k {
				want = append(want, producerItem(i, k))
			}
			if tc.appears {
				want = append(want, producerItem(k, k))
			}
			want = append(want, "after")
			for i, w := range want {
				got, err := j.TryGet()
				if err != nil || got != w {
					t.Fatalf("item %d = %.20q (%d bytes), %v; want %.20q", i, got, len(got), err, w)
				}
				if err := j.TaskDone(); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := j.TryGet(); !errors.Is(err, mp.ErrEmpty) {
				t.Fatalf("one more item: %.20q, %v", got, err)
			}
			if err := j.Join(ctxTimeout(t, 3*time.Second)); err != nil {
				t.Fatalf("Join once every item that appeared is done = %v", err)
			}
			if err := j.TaskDone(); !errors.Is(err, mp.ErrTaskDone) {
				t.Fatalf("one more TaskDone = %v", err)
			}
		})
	}
}

func TestJoinableQueue(t *testing.T) {
	j, err := mp.NewJoinableQueue[int](0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.TaskDone(); !errors.Is(err, mp.ErrTaskDone) {
		t.Fatalf("TaskDone on a fresh queue = %v", err)
	}
	r, w := pipe(t, false)
	p := mp.NewProcess(queueWorker, queueArgs{J: j, Out: w, Mode: "joinconsume", Delay: time.Millisecond})
	p.Daemon = true
	start(t, p)
	w.Close()
	ctx := ctxTimeout(t, 30*time.Second)
	for i := 0; i < 20; i++ {
		j.Put(ctx, i)
	}
	if err := j.Join(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		var v int
		if err := r.Recv(&v); err != nil || v != i {
			t.Fatalf("done item %d = %d, %v", i, v, err)
		}
	}
	if err := j.Join(ctxTimeout(t, time.Second)); err != nil {
		t.Fatalf("Join with nothing pending = %v", err)
	}
}

func TestQueueConsumerKilledMidGet(t *testing.T) {
	q := newQueue[string](t, 0)
	ctx := ctxTimeout(t, 30*time.Second)
	big := string(bytes.Repeat([]byte{'y'}, 64<<20))
	if err := q.Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	q.Put(ctx, "second")
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(queueWorker, queueArgs{Q: q, Out: w, Mode: "bigget"}))
	w.Close()
	var pid int
	if err := r.Recv(&pid); err != nil {
		t.Fatal(err)
	}
	// Kill it while it holds the consumer lock, copying the item out.
	waitFor(t, func() bool { _, held := mp.QueueLocksHeld(q); return held })
	syscall.Kill(pid, syscall.SIGKILL)
	p.Join(context.Background())
	// The item it was taking is still there, then the next one.
	if got, err := q.Get(ctx); err != nil || len(got) != len(big) {
		t.Fatalf("Get after a consumer died mid-get = %d bytes, %v", len(got), err)
	}
	if got, err := q.Get(ctx); err != nil || got != "second" {
		t.Fatalf("next Get = %q, %v", got, err)
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
	}
}

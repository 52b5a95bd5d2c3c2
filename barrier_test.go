//go:build linux

package mp_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// barrierRuns counts action runs in shared memory: each process that takes
// part sets it before it waits, the action releases a unit.
var barrierRuns atomic.Pointer[mp.Semaphore]

var barrierCount = mp.RegisterProc("test.barrier.count", func(struct{}) error {
	if s := barrierRuns.Load(); s != nil {
		return s.Release()
	}
	return errors.New("no counter in this process")
})

var barrierFail = mp.RegisterProc("test.barrier.fail", func(struct{}) error {
	return errors.New("action failed")
})

var barrierPanic = mp.RegisterProc("test.barrier.panic", func(struct{}) error {
	panic("action panicked")
})

// barrierHang counts its run, then hangs.
var barrierHang = mp.RegisterProc("test.barrier.hang", func(struct{}) error {
	if s := barrierRuns.Load(); s != nil {
		s.Release()
	}
	time.Sleep(time.Minute)
	return nil
})

type barrierArgs struct {
	B      *mp.Barrier
	Runs   *mp.Semaphore
	Out    *mp.Conn
	Rounds int
	// Grandchild, when set, is the Out of a grandchild that takes part
	// too.
	Grandchild *mp.Conn
}

// barrierParty waits Rounds times and sends the indices it got, or the
// error.
var barrierParty = mp.RegisterProc("test.barrier.party", barrierPartyBody)

var barrierGrandchild *mp.Func[barrierArgs, struct{}]

func init() {
	barrierGrandchild = mp.RegisterProc("test.barrier.grandchild", barrierPartyBody)
}

type barrierReport struct {
	Indices []int
	Err     string
}

func barrierPartyBody(a barrierArgs) error {
	defer a.Out.Close()
	if a.Runs != nil {
		barrierRuns.Store(a.Runs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var p *mp.Process
	if a.Grandchild != nil {
		p = mp.NewProcess(barrierGrandchild, barrierArgs{B: a.B, Runs: a.Runs, Out: a.Grandchild, Rounds: a.Rounds})
		if err := p.Start(); err != nil {
			return err
		}
		a.Grandchild.Close()
	}
	var rep barrierReport
	for range a.Rounds {
		i, err := a.B.Wait(ctx)
		if err != nil {
			rep.Err = err.Error()
			break
		}
		rep.Indices = append(rep.Indices, i)
	}
	if err := a.Out.Send(rep); err != nil {
		return err
	}
	if p != nil {
		return p.Join(ctx)
	}
	return nil
}

// setBarrierRuns makes runs this process's action counter for the test.
func setBarrierRuns(t *testing.T, runs *mp.Semaphore) {
	barrierRuns.Store(runs)
	t.Cleanup(func() { barrierRuns.Store(nil) })
}

func mkBarrier(t *testing.T, parties int, action *mp.Func[struct{}, struct{}], timeout time.Duration) *mp.Barrier {
	t.Helper()
	b, err := mp.NewBarrier(parties, action, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// barUntil polls cond until it holds or 10 s have passed.
func barUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// goParty waits at b in a goroutine.
func goParty(b *mp.Barrier, ctx context.Context) <-chan error {
	res := make(chan error, 1)
	go func() {
		_, err := b.Wait(ctx)
		res <- err
	}()
	return res
}

func barRecv(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return")
		return nil
	}
}

func TestBarrierErrors(t *testing.T) {
	for _, n := range []int{0, -1, mp.MaxBarrierParties + 1} {
		if _, err := mp.NewBarrier(n, nil, 0); err == nil {
			t.Errorf("NewBarrier(%d) accepted", n)
		}
	}
	if _, err := mp.NewBarrier(2, nil, -time.Second); err == nil {
		t.Error("negative timeout accepted")
	}
	if _, err := mp.NewBarrier(2, &mp.Func[struct{}, struct{}]{}, 0); !errors.Is(err, mp.ErrUnknownTarget) {
		t.Errorf("unregistered action: %v", err)
	}
	var zero mp.Barrier
	if _, err := zero.Wait(context.Background()); err != mp.ErrClosed {
		t.Errorf("Wait on a zero Barrier = %v", err)
	}
	if zero.Reset() != mp.ErrClosed || zero.Abort() != mp.ErrClosed || zero.Broken() || zero.NWaiting() != 0 {
		t.Error("zero Barrier usable")
	}
	if _, err := zero.MarshalCBOR(); err != mp.ErrClosed {
		t.Errorf("MarshalCBOR of a zero Barrier = %v", err)
	}
	// One party: every Wait opens it at once.
	b := mkBarrier(t, 1, nil, 0)
	for range 3 {
		if i, err := b.Wait(context.Background()); i != 0 || err != nil {
			t.Fatalf("1-party Wait = %d, %v", i, err)
		}
	}
}

func TestBarrierGoroutines(t *testing.T) {
	runs := mkSem(t, 0)
	setBarrierRuns(t, runs)
	const parties, rounds = 3, 200
	b := mkBarrier(t, parties, barrierCount, 0)
	if b.Parties() != parties || b.NWaiting() != 0 || b.Broken() {
		t.Fatal("new barrier state wrong")
	}
	indices := make([][]int, parties)
	var wg sync.WaitGroup
	ctx := ctxTimeout(t, 30*time.Second)
	for p := range parties {
		wg.Go(func() {
			for range rounds {
				i, err := b.Wait(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				indices[p] = append(indices[p], i)
			}
		})
	}
	wg.Wait()
	barCheckRounds(t, indices, parties, rounds)
	if runs.Value() != rounds {
		t.Fatalf("action ran %d times in %d rounds", runs.Value(), rounds)
	}
}

// barCheckRounds checks that in each round the parties got each index once.
func barCheckRounds(t *testing.T, indices [][]int, parties, rounds int) {
	t.Helper()
	for p, ind := range indices {
		if len(ind) != rounds {
			t.Fatalf("party %d passed %d rounds of %d", p, len(ind), rounds)
		}
	}
	for r := range rounds {
		var got []int
		for _, ind := range indices {
			got = append(got, ind[r])
		}
		slices.Sort(got)
		for i, v := range got {
			if v != i {
				t.Fatalf("round %d: indices %v", r, got)
			}
		}
	}
}

func TestBarrierAcrossProcesses(t *testing.T) {
	runs := mkSem(t, 0)
	setBarrierRuns(t, runs)
	// The parent, two children and a grandchild.
	const parties, rounds = 4, 100
	b := mkBarrier(t, parties, barrierCount, 0)
	var conns []*mp.Conn
	var procs []*mp.Process
	for i := range 2 {
		r, w := pipe(t, true)
		a := barrierArgs{B: b, Runs: runs, Out: w, Rounds: rounds}
		var gr *mp.Conn
		if i == 0 {
			var gw *mp.Conn
			gr, gw = pipe(t, true)
			a.Grandchild = gw
		}
		procs = append(procs, start(t, mp.NewProcess(barrierParty, a)))
		w.Close()
		if a.Grandchild != nil {
			a.Grandchild.Close()
			conns = append(conns, gr)
		}
		conns = append(conns, r)
	}
	ctx := ctxTimeout(t, 30*time.Second)
	mine := make([]int, 0, rounds)
	for range rounds {
		i, err := b.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, i)
	}
	indices := [][]int{mine}
	for _, c := range conns {
		var rep barrierReport
		if err := c.Recv(&rep); err != nil {
			t.Fatal(err)
		}
		if rep.Err != "" {
			t.Fatal(rep.Err)
		}
		indices = append(indices, rep.Indices)
	}
	barCheckRounds(t, indices, parties, rounds)
	if runs.Value() != rounds {
		t.Fatalf("action ran %d times in %d rounds", runs.Value(), rounds)
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBarrierTimeouts(t *testing.T) {
	// The barrier's default timeout.
	b := mkBarrier(t, 2, nil, 30*time.Millisecond)
	_, err := b.Wait(context.Background())
	if !errors.Is(err, mp.ErrBrokenBarrier) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past the barrier's timeout = %v", err)
	}
	if !b.Broken() {
		t.Fatal("not broken after a timeout")
	}
	if _, err := b.Wait(context.Background()); err != mp.ErrBrokenBarrier {
		t.Fatalf("Wait on a broken barrier = %v", err)
	}
	b.Reset()
	if b.Broken() {
		t.Fatal("broken after Reset")
	}
	// A ctx deadline, with another party waiting: it gets
	// ErrBrokenBarrier.
	b = mkBarrier(t, 3, nil, 0)
	other := goParty(b, ctxTimeout(t, 20*time.Second))
	barUntil(t, "a party waits", func() bool { return b.NWaiting() == 1 })
	_, err = b.Wait(ctxTimeout(t, 30*time.Millisecond))
	if !errors.Is(err, mp.ErrBrokenBarrier) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past ctx's deadline = %v", err)
	}
	if err := barRecv(t, other); err != mp.ErrBrokenBarrier {
		t.Fatalf("other party = %v", err)
	}
	if b.NWaiting() != 0 {
		t.Fatalf("NWaiting %d on a broken barrier", b.NWaiting())
	}
	// A cancelled ctx.
	b.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err = b.Wait(ctx); !errors.Is(err, mp.ErrBrokenBarrier) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait = %v", err)
	}
	// The earlier of ctx and the barrier's timeout holds.
	b = mkBarrier(t, 2, nil, time.Hour)
	begin := time.Now()
	if _, err = b.Wait(ctxTimeout(t, 30*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
	}
	if time.Since(begin) > 10*time.Second {
		t.Fatal("the barrier's timeout held over ctx's")
	}
}

func TestBarrierAbortAndReset(t *testing.T) {
	b := mkBarrier(t, 3, nil, 0)
	ctx := ctxTimeout(t, 20*time.Second)
	p1, p2 := goParty(b, ctx), goParty(b, ctx)
	barUntil(t, "two parties wait", func() bool { return b.NWaiting() == 2 })
	// Reset wakes the waiters with ErrBrokenBarrier, and the barrier is
	// not broken after.
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []<-chan error{p1, p2} {
		if err := barRecv(t, p); err != mp.ErrBrokenBarrier {
			t.Fatalf("waiter after Reset = %v", err)
		}
	}
	if b.Broken() {
		t.Fatal("broken after Reset")
	}
	// Usable again.
	p1, p2 = goParty(b, ctx), goParty(b, ctx)
	if _, err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if barRecv(t, p1) != nil || barRecv(t, p2) != nil {
		t.Fatal("round after Reset failed")
	}
	// Abort breaks it for the waiters and those after.
	p1 = goParty(b, ctx)
	barUntil(t, "a party waits", func() bool { return b.NWaiting() == 1 })
	if err := b.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := barRecv(t, p1); err != mp.ErrBrokenBarrier {
		t.Fatalf("waiter after Abort = %v", err)
	}
	if !b.Broken() {
		t.Fatal("not broken after Abort")
	}
	if _, err := b.Wait(ctx); err != mp.ErrBrokenBarrier {
		t.Fatalf("Wait after Abort = %v", err)
	}
	b.Reset()
	p1, p2 = goParty(b, ctx), goParty(b, ctx)
	if _, err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if barRecv(t, p1) != nil || barRecv(t, p2) != nil {
		t.Fatal("round after Abort and Reset failed")
	}
}

func TestBarrierActionFails(t *testing.T) {
	for _, action := range []*mp.Func[struct{}, struct{}]{barrierFail, barrierPanic} {
		b := mkBarrier(t, 2, action, 0)
		ctx := ctxTimeout(t, 20*time.Second)
		other := goParty(b, ctx)
		barUntil(t, "a party waits", func() bool { return b.NWaiting() == 1 })
		// This Wait arrives last and runs the action.
		_, err := b.Wait(ctx)
		var re *mp.RemoteError
		if !errors.As(err, &re) || errors.Is(err, mp.ErrBrokenBarrier) {
			t.Fatalf("%s: runner's Wait = %v", action.Name(), err)
		}
		if re.Panic != (action == barrierPanic) {
			t.Fatalf("%s: %+v", action.Name(), re)
		}
		if err := barRecv(t, other); err != mp.ErrBrokenBarrier {
			t.Fatalf("%s: other party = %v", action.Name(), err)
		}
		if !b.Broken() {
			t.Fatalf("%s: not broken", action.Name())
		}
	}
}

// More goroutines than parties: arrivals while an opening drains wait
// for it to end (Python's semantics).
func TestBarrierMoreGoroutinesThanParties(t *testing.T) {
	b := mkBarrier(t, 2, nil, 0)
	const goroutines, waits = 6, 600
	var wg sync.WaitGroup
	var counts [2]atomic.Int64
	var budget atomic.Int64
	budget.Store(waits) // an even number of waits, however they are shared
	ctx := ctxTimeout(t, 30*time.Second)
	for range goroutines {
		wg.Go(func() {
			for budget.Add(-1) >= 0 {
				i, err := b.Wait(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				counts[i].Add(1)
			}
		})
	}
	wg.Wait()
	if counts[0].Load() != waits/2 || counts[1].Load() != waits/2 {
		t.Fatalf("indices %d, %d", counts[0].Load(), counts[1].Load())
	}
}

// A process that dies while it waits breaks the barrier; Reset recovers
// it.
func TestBarrierPartyKilled(t *testing.T) {
	b := mkBarrier(t, 3, nil, 0)
	r, w := pipe(t, true)
	p := start(t, mp.NewProcess(barrierParty, barrierArgs{B: b, Out: w, Rounds: 1}))
	w.Close()
	other := goParty(b, ctxTimeout(t, 20*time.Second))
	barUntil(t, "the child and a goroutine wait", func() bool { return b.NWaiting() == 2 })
	p.Kill()
	begin := time.Now()
	if err := barRecv(t, other); err != mp.ErrBrokenBarrier {
		t.Fatalf("waiter after a party died = %v", err)
	}
	t.Logf("broken %v after the kill", time.Since(begin))
	p.Join(context.Background())
	var rep barrierReport
	if err := r.Recv(&rep); err == nil {
		t.Fatalf("killed child reported %+v", rep)
	}
	if !b.Broken() {
		t.Fatal("not broken")
	}
	// The dead party no longer counts: after Reset three live parties
	// pass.
	b.Reset()
	if b.Broken() {
		t.Fatal("still broken after Reset")
	}
	ctx := ctxTimeout(t, 20*time.Second)
	p1, p2 := goParty(b, ctx), goParty(b, ctx)
	if _, err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if barRecv(t, p1) != nil || barRecv(t, p2) != nil {
		t.Fatal("round after Reset failed")
	}
}

// A process that dies running the action (holding the barrier's lock)
// breaks it too.
func TestBarrierActionRunnerKilled(t *testing.T) {
	runs := mkSem(t, 0)
	b := mkBarrier(t, 2, barrierHang, 0)
	other := goParty(b, ctxTimeout(t, 20*time.Second))
	barUntil(t, "a party waits", func() bool { return b.NWaiting() == 1 })
	r, w := pipe(t, true)
	p := start(t, mp.NewProcess(barrierParty, barrierArgs{B: b, Runs: runs, Out: w, Rounds: 1}))
	w.Close()
	// The child arrives last and runs the action, which hangs.
	if err := runs.Acquire(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := barRecv(t, other); err != mp.ErrBrokenBarrier {
		t.Fatalf("waiter after the action's runner died = %v", err)
	}
	p.Join(context.Background())
	r.Close()
	if !b.Broken() {
		t.Fatal("not broken")
	}
	// Reset takes the barrier's lock over from the dead runner.
	b.Reset()
	if b.Broken() || b.NWaiting() != 0 {
		t.Fatal("Reset did not recover the barrier")
	}
}

func TestBarrierWrongTypeOnTheWire(t *testing.T) {
	a, c := pipe(t, true)
	b := mkBarrier(t, 2, barrierCount, time.Second)
	a.Send(b)
	var s *mp.Semaphore
	if err := c.Recv(&s); err == nil {
		t.Fatal("a Barrier was received as a Semaphore")
	}
	a.Send(b)
	var got *mp.Barrier
	if err := c.Recv(&got); err != nil {
		t.Fatal(err)
	}
	if got.Parties() != 2 {
		t.Fatalf("received barrier has %d parties", got.Parties())
	}
	// The two handles are one barrier.
	runs := mkSem(t, 0)
	setBarrierRuns(t, runs)
	ctx := ctxTimeout(t, 20*time.Second)
	other := goParty(got, ctx)
	if _, err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := barRecv(t, other); err != nil || runs.Value() != 1 {
		t.Fatalf("round through the received handle: %v, %d action runs", err, runs.Value())
	}
}

func BenchmarkBarrier(b *testing.B) {
	bar, err := mp.NewBarrier(2, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	r, w, err := mp.Pipe(true)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	p := mp.NewProcess(barrierParty, barrierArgs{B: bar, Out: w, Rounds: b.N})
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	defer p.Close()
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := bar.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var rep barrierReport
	r.Recv(&rep)
	if err := p.Join(ctx); err != nil {
		b.Fatal(err)
	}
}

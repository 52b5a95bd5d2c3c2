//go:build linux

package natstest

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	_ "github.com/go-mp/mp/cluster" // the "nats" backend of manager
	"github.com/go-mp/mp/manager"
)

// kvFailArgs are the arguments of the manager failover test's children.
type kvFailArgs struct {
	URLs  string
	N     int
	Lease time.Duration
	Out   *mp.Conn
}

// holding is one acquisition of the lock, as its holder saw it.
type holding struct {
	Token       uint64
	Enter, Exit int64 // wall clock, ns: after Acquire returned, before Release
	Lost        bool  // Release returned ErrLeaseLost
	OwnerDied   bool  // Acquire returned ErrOwnerDied
}

// kvFailLock acquires and releases the Lock "fail" N times, holding it
// 2 ms each time, and sends each holding on Out. The failover is waited
// out: Acquire retries the store's errors, and the store sends a write
// again until it is made.
var kvFailLock = mp.RegisterProc("natstest.kvFailLock", func(a kvFailArgs) error {
	return onManager(a.URLs, func(ctx context.Context, m *manager.Manager) error {
		l, err := manager.NewLock(ctx, m, manager.Named("fail"), manager.Lease(a.Lease))
		if err != nil {
			return err
		}
		for range a.N {
			err := l.Acquire(ctx)
			if err != nil && !errors.Is(err, mp.ErrOwnerDied) {
				return err
			}
			h := holding{Token: l.Token(), Enter: time.Now().UnixNano(), OwnerDied: err != nil}
			time.Sleep(2 * time.Millisecond)
			h.Exit = time.Now().UnixNano()
			err = l.Release(ctx)
			if err != nil && !errors.Is(err, manager.ErrLeaseLost) {
				return err
			}
			h.Lost = err != nil
			if err := a.Out.Send(h); err != nil {
				return err
			}
		}
		return nil
	})
})

// kvFailCount adds 1 to the Value "fail" N times by compare-and-swap, a
// millisecond apart, and sends the wall clock of each on Out. A failed
// call is tried again: its write was not made (see the store's
// publishing).
var kvFailCount = mp.RegisterProc("natstest.kvFailCount", func(a kvFailArgs) error {
	return onManager(a.URLs, func(ctx context.Context, m *manager.Manager) error {
		v, err := manager.NewValue(ctx, m, 0, manager.Named("fail"))
		if err != nil {
			return err
		}
		for range a.N {
			for {
				cur, err := v.Get(ctx)
				if err == nil {
					var ok bool
					if ok, err = v.CompareAndSwap(ctx, cur, cur+1); ok {
						break
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
			if err := a.Out.Send(time.Now().UnixNano()); err != nil {
				return err
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
})

// TestManagerFailoverKillLeader: on a 3-node cluster (bucket with 3
// replicas), two processes contend for a manager Lock and two add to a
// manager Value by compare-and-swap; the leader of the bucket's stream is
// SIGKILLed once the run is under way. Never two holders at once (the
// holdings, ordered by fencing token, do not overlap in time, but for a
// holder told ErrLeaseLost), the count ends exact, and progress resumes;
// the stall is reported.
func TestManagerFailoverKillLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Second)
	defer cancel()
	nodes := StartCluster(ctx, t, 3)
	urls := nodes.TokenURLs(nil)
	// The bucket is made here, with 3 replicas, before the children use it.
	m, err := manager.Connect(ctx, "nats", urls, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := manager.NewValue(ctx, m, 0, manager.Named("fail")); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nodes.Connect(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	leader, err := nodes.StreamLeader(ctx, js, "KV_MP_MANAGER")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bucket leader %s", leader.Name)

	const locks, lockN, counters, countN = 2, 600, 2, 2000
	// The lease outlasts a failover's stall, mostly: a holder whose lease
	// ran out meanwhile is told so, and the check allows for it.
	const lease = 15 * time.Second
	var (
		mu       sync.Mutex
		holdings []holding
		counts   []int64
		wg       sync.WaitGroup
		procs    []*mp.Process
	)
	start := func(f *mp.Func[kvFailArgs, struct{}], n int, recv func(*mp.Conn) error) {
		r, w, err := mp.Pipe(false)
		if err != nil {
			t.Fatal(err)
		}
		p := mp.NewProcess(f, kvFailArgs{URLs: nodes.TokenURLs(leader), N: n, Lease: lease, Out: w})
		err = p.Start()
		w.Close()
		if err != nil {
			r.Close()
			t.Fatal(err)
		}
		procs = append(procs, p)
		wg.Go(func() {
			defer r.Close()
			for recv(r) == nil {
			}
		})
	}
	for range locks {
		start(kvFailLock, lockN, collect(&mu, &holdings))
	}
	for range counters {
		start(kvFailCount, countN, collect(&mu, &counts))
	}
	defer func() {
		for _, p := range procs {
			p.Kill()
			p.Join(context.Background())
			p.Close()
		}
	}()
	// Kill the leader once a tenth of the lock's holdings are in.
	for {
		mu.Lock()
		n := len(holdings)
		mu.Unlock()
		if n >= locks*lockN/10 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the run did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed := time.Now()
	leader.Kill()
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			mu.Lock()
			t.Errorf("%d holdings, %d increments in; the last ones after the kill: %v, %v", len(holdings), len(counts),
				stall(killed, holdings, func(h holding) int64 { return h.Enter }), stall(killed, counts, func(at int64) int64 { return at }))
			mu.Unlock()
			t.Fatalf("child: %v", err)
		}
		if code, _ := p.ExitCode(); code != 0 {
			t.Fatalf("child exit code %d", code)
		}
	}
	wg.Wait()

	if len(holdings) != locks*lockN || len(counts) != counters*countN {
		t.Fatalf("%d holdings, %d increments reported", len(holdings), len(counts))
	}
	// Never two holders at once.
	slices.SortFunc(holdings, func(a, b holding) int { return cmp.Compare(a.Token, b.Token) })
	lost, died := 0, 0
	for i, h := range holdings {
		if i > 0 && h.Token == holdings[i-1].Token {
			t.Fatalf("token %d given twice", h.Token)
		}
		if h.Lost {
			lost++
		}
		if h.OwnerDied {
			died++
		}
		for _, g := range holdings[i+1:] {
			if !h.Lost && g.Enter < h.Exit {
				t.Fatalf("holding with token %d entered %v before the holding with token %d left",
					g.Token, time.Duration(h.Exit-g.Enter), h.Token)
			}
		}
	}
	// The count is exact.
	v, err := manager.NewValue(ctx, m, 0, manager.Named("fail"))
	if err != nil {
		t.Fatal(err)
	}
	var got int
	for {
		if got, err = v.Get(ctx); err == nil || ctx.Err() != nil {
			break
		}
	}
	if got != counters*countN {
		t.Fatalf("count %d, want %d (%v)", got, counters*countN, err)
	}
	t.Logf("%d holdings (%d leases lost, %d taken over), count exact at %d", len(holdings), lost, died, got)
	t.Logf("after the kill the longest stall was %v between two holdings, %v between two increments",
		stall(killed, holdings, func(h holding) int64 { return h.Enter }),
		stall(killed, counts, func(at int64) int64 { return at }))
}

// collect returns a function that receives one T on a Conn and appends
// it to *to, under mu.
func collect[T any](mu *sync.Mutex, to *[]T) func(*mp.Conn) error {
	return func(c *mp.Conn) error {
		var v T
		err := c.Recv(&v)
		if err == nil {
			mu.Lock()
			*to = append(*to, v)
			mu.Unlock()
		}
		return err
	}
}

// stall returns the longest time after since without an event of evs.
func stall[E any](since time.Time, evs []E, at func(E) int64) time.Duration {
	var ts []int64
	for _, e := range evs {
		if t := at(e); t >= since.UnixNano() {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	longest, prev := time.Duration(0), since.UnixNano()
	for _, t := range ts {
		longest = max(longest, time.Duration(t-prev))
		prev = t
	}
	return longest.Round(time.Millisecond)
}

// onManager runs f with a manager on the store at url, within 80 s.
func onManager(url string, f func(ctx context.Context, m *manager.Manager) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	m, err := manager.Connect(ctx, "nats", url, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	return f(ctx, m)
}

//go:build linux

package bench

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

// manager_clients measures how a manager serves more and more client
// processes at once (issue 11): N processes (1 to 128) each alternate a
// Set and a Get on one manager Dict for the same fixed window. Per N it
// reports the operations per second of all the clients together, the
// 99th percentile of one operation's latency, and the CPU time per
// operation of the server process and of the client processes together.

// clientCounts are the sizes of manager_clients, each 4 times the last
// from 2 up: the growth ratio between two lines is the cost of 4 times
// the clients.
var clientCounts = []int{1, 2, 8, 32, 128}

// latHist is a latency histogram in nanoseconds with 64 buckets per
// power of two (under 2% error), small enough to send back whole.
type latHist []uint32

const latSub = 64 // buckets per power of two

func newLatHist() latHist { return make(latHist, latSub*40) }

func latBucket(ns uint64) int {
	if ns < latSub {
		return int(ns)
	}
	e := bits.Len64(ns) // ≥ 7
	m := ns >> (e - 7)  // the top 7 bits: 64..127
	return (e-6)*latSub + int(m-latSub)
}

// latValue is the lower bound of bucket b, in nanoseconds.
func latValue(b int) uint64 {
	if b < latSub {
		return uint64(b)
	}
	e := b/latSub + 6
	return uint64(b%latSub+latSub) << (e - 7)
}

func (h latHist) add(d time.Duration) {
	if b := latBucket(uint64(max(d, 0))); b < len(h) {
		h[b]++
	} else {
		h[len(h)-1]++
	}
}

// quantile returns the latency below which a fraction q of the counts
// fall.
func (h latHist) quantile(q float64) time.Duration {
	var total uint64
	for _, n := range h {
		total += uint64(n)
	}
	want := uint64(q * float64(total))
	var seen uint64
	for b, n := range h {
		seen += uint64(n)
		if seen > want {
			return time.Duration(latValue(b))
		}
	}
	return 0
}

type mgrClientArgs struct {
	ID    int
	D     *manager.Dict[int, int]
	Ready *mp.Queue[int]
	Go    *mp.Event
	End   *mp.RawValue[int64] // the end of the window, Unix nanoseconds
	Out   *mp.Queue[mgrClientResult]
}

type mgrClientResult struct {
	Ops  int
	CPU  time.Duration // the client process's CPU time in the window
	Hist latHist
}

// mgrClient is one client of manager_clients: it connects, says it is
// ready, and once told to go alternates Set and Get until the window
// ends.
var mgrClient = mp.RegisterProc("bench.mgrClient", func(a mgrClientArgs) error {
	ctx := context.Background()
	if err := a.D.Set(ctx, a.ID%100, 0); err != nil { // connects
		return err
	}
	if err := a.Ready.Put(ctx, a.ID); err != nil {
		return err
	}
	if err := a.Go.Wait(ctx); err != nil {
		return err
	}
	end := time.Unix(0, a.End.Load())
	cpu0 := selfCPU()
	h := newLatHist()
	ops := 0
	for i := 0; ; i++ {
		t0 := time.Now()
		if !t0.Before(end) {
			break
		}
		var err error
		if i%2 == 0 {
			err = a.D.Set(ctx, (a.ID+i)%100, i)
		} else {
			_, _, err = a.D.Get(ctx, (a.ID+i-1)%100)
		}
		if err != nil {
			return err
		}
		h.add(time.Since(t0))
		ops++
	}
	return a.Out.Put(ctx, mgrClientResult{Ops: ops, CPU: selfCPU() - cpu0, Hist: h})
})

func init() {
	add(Workload{Name: "manager_clients", Doc: "N client processes (1..128) set/get one manager Dict: ops/s, p99, server CPU per op",
		Run: benchManagerClients, Growth: true})
}

func benchManagerClients(scale float64) ([]Result, error) {
	window := time.Duration(float64(2*time.Second) * scale)
	window = max(window, 200*time.Millisecond)
	counts := clientCounts
	if env := os.Getenv("MP_BENCH_CLIENTS"); env != "" {
		// Some sizes only, for a closer look: MP_BENCH_CLIENTS=1,128.
		counts = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("manager_clients: bad MP_BENCH_CLIENTS %q", env)
			}
			counts = append(counts, n)
		}
	}
	var out []Result
	for _, n := range counts {
		rs, err := managerClients(n, window)
		if err != nil {
			return nil, fmt.Errorf("manager_clients_%d: %w", n, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

func managerClients(n int, window time.Duration) ([]Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), window+5*time.Minute)
	defer cancel()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	d, err := manager.NewDict[int, int](ctx, m)
	if err != nil {
		return nil, err
	}
	ready, err := mp.NewQueue[int](0)
	if err != nil {
		return nil, err
	}
	defer ready.Close()
	results, err := mp.NewQueue[mgrClientResult](0)
	if err != nil {
		return nil, err
	}
	defer results.Close()
	start, err := mp.NewEvent()
	if err != nil {
		return nil, err
	}
	end, err := mp.NewRawValue[int64](0)
	if err != nil {
		return nil, err
	}
	defer end.Close()
	ps := make([]*mp.Process, n)
	for i := range ps {
		ps[i] = mp.NewProcess(mgrClient, mgrClientArgs{ID: i, D: d, Ready: ready, Go: start, End: end, Out: results})
		if err := ps[i].Start(); err != nil {
			return nil, err
		}
		defer ps[i].Kill() // only if we return early: Join reaped the others
	}
	for range n {
		if _, err := ready.Get(ctx); err != nil {
			return nil, err
		}
	}
	cpu0, err := procCPU(m.ServerPid())
	if err != nil {
		return nil, err
	}
	end.Store(time.Now().Add(window).UnixNano())
	if err := start.Set(); err != nil {
		return nil, err
	}
	time.Sleep(time.Until(time.Unix(0, end.Load())))
	cpu1, err := procCPU(m.ServerPid())
	if err != nil {
		return nil, err
	}
	h := newLatHist()
	ops := 0
	var clientCPU time.Duration
	for range n {
		r, err := results.Get(ctx)
		if err != nil {
			return nil, err
		}
		ops += r.Ops
		clientCPU += r.CPU
		for b, c := range r.Hist {
			if b < len(h) {
				h[b] += c
			}
		}
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return nil, err
		}
	}
	name := fmt.Sprintf("manager_clients_%d", n)
	return []Result{
		{name + "_ops", float64(ops) / window.Seconds() / 1e3, "k ops/s"},
		{name + "_p99", float64(h.quantile(0.99)) / 1e6, "ms"},
		{name + "_srvcpu", (cpu1 - cpu0).Seconds() * 1e6 / float64(max(ops, 1)), "us/op"},
		{name + "_clicpu", clientCPU.Seconds() * 1e6 / float64(max(ops, 1)), "us/op"},
	}, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU returns the user and system CPU time process pid has used, from
// /proc/<pid>/stat (in clock ticks of 10 ms, Linux's USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing parenthesis (state is field 3, utime 14, stime 15).
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

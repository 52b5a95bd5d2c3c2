//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/cluster"
	"github.com/go-mp/mp/manager"
)

// The cluster manager workloads: manager objects on the embedded
// JetStream of this process, used from child processes that connect with
// manager.Connect(ctx, "nats", url, nil), as programs on other machines
// would.

func init() {
	add(Workload{Name: "cluster_dict", Doc: "Set+Get on a named manager Dict on JetStream, from another process", Run: benchClusterDict})
	add(Workload{Name: "cluster_lock_handoff", Doc: "2 processes hand a manager Lock on JetStream to each other (p50)", Run: benchClusterLockHandoff})
	add(Workload{Name: "cluster_counter", Doc: "2 processes add to a manager Value on JetStream by compare-and-swap", Run: benchClusterCounter})
}

// kvBenchArgs are the arguments of the children of these workloads.
type kvBenchArgs struct {
	URL   string
	N     int
	First bool     // cluster_lock_handoff: this one takes the lock first
	Peer  *mp.Conn // cluster_lock_handoff: to the other child
	Out   *mp.Conn // what the child measured
}

// withNatsManager runs f with a manager on url, bounded by a minute.
func withNatsManager(url string, f func(ctx context.Context, m *manager.Manager) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := manager.Connect(ctx, "nats", url, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	return f(ctx, m)
}

var kvBenchDict = mp.RegisterProc("bench.kvDict", func(a kvBenchArgs) error {
	return withNatsManager(a.URL, func(ctx context.Context, m *manager.Manager) error {
		d, err := manager.NewDict[int, int](ctx, m, manager.Named("bench"))
		if err != nil {
			return err
		}
		t := time.Now()
		for i := range a.N {
			if err := d.Set(ctx, i%100, i); err != nil {
				return err
			}
			if v, ok, err := d.Get(ctx, i%100); err != nil || !ok || v != i {
				return fmt.Errorf("cluster_dict: Get = %d %v %v, want %d", v, ok, err, i)
			}
		}
		return a.Out.Send(time.Since(t))
	})
})

var kvBenchCounter = mp.RegisterProc("bench.kvCounter", func(a kvBenchArgs) error {
	return withNatsManager(a.URL, func(ctx context.Context, m *manager.Manager) error {
		v, err := manager.NewValue(ctx, m, 0, manager.Named("bench"))
		if err != nil {
			return err
		}
		// The usual loop: read once, then compare-and-swap from the value
		// believed current, reading again only after a failed swap.
		tries := 0
		cur, err := v.Get(ctx)
		if err != nil {
			return err
		}
		for done := 0; done < a.N; {
			tries++
			ok, err := v.CompareAndSwap(ctx, cur, cur+1)
			if err != nil {
				return err
			}
			if ok {
				cur++
				done++
			} else if cur, err = v.Get(ctx); err != nil {
				return err
			}
		}
		return a.Out.Send(tries)
	})
})

// kvBenchHandoff hands the lock to its peer and back, N times each way:
// the holder waits until the peer says it is about to Acquire, gives it
// time to be waiting, then releases and sends the wall time of the
// release; the new holder measures from there to its Acquire's return,
// and says it has the lock.
var kvBenchHandoff = mp.RegisterProc("bench.kvHandoff", func(a kvBenchArgs) error {
	return withNatsManager(a.URL, func(ctx context.Context, m *manager.Manager) error {
		l, err := manager.NewLock(ctx, m, manager.Named("bench"))
		if err != nil {
			return err
		}
		// The first holder takes the lock before the other starts.
		holding := a.First
		var start bool
		if holding {
			if err := l.Acquire(ctx); err != nil {
				return err
			}
			err = a.Peer.Send(true)
		} else {
			err = a.Peer.Recv(&start)
		}
		if err != nil {
			return err
		}
		var lat []time.Duration
		for range 2 * a.N {
			if holding {
				var ready bool
				if err := a.Peer.Recv(&ready); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond) // the peer waits in Acquire
				released := time.Now().UnixNano()
				if err := l.Release(ctx); err != nil {
					return err
				}
				if err := a.Peer.Send(released); err != nil {
					return err
				}
				// Not before the peer has it: a release followed at
				// once by an Acquire may take the lock back first.
				var got bool
				if err := a.Peer.Recv(&got); err != nil {
					return err
				}
			} else {
				if err := a.Peer.Send(true); err != nil {
					return err
				}
				if err := l.Acquire(ctx); err != nil {
					return err
				}
				took := time.Now().UnixNano()
				var released int64
				if err := a.Peer.Recv(&released); err != nil {
					return err
				}
				lat = append(lat, time.Duration(took-released))
				if err := a.Peer.Send(true); err != nil {
					return err
				}
			}
			holding = !holding
		}
		if holding {
			if err := l.Release(ctx); err != nil {
				return err
			}
		}
		return a.Out.Send(lat)
	})
})

// runKVChildren starts an embedded cluster and a child per args (their
// Out filled in), waits for them, and returns what each sent on Out,
// decoded into a T.
func runKVChildren[T any](f *mp.Func[kvBenchArgs, struct{}], args []kvBenchArgs, prepare func(ctx context.Context, m *manager.Manager) error, check func(ctx context.Context, m *manager.Manager) error) ([]T, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	m, err := c.Manager(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer m.Close()
	if prepare != nil {
		if err := prepare(ctx, m); err != nil {
			return nil, 0, err
		}
	}
	var ps []*mp.Process
	var outs []*mp.Conn
	defer func() {
		for _, p := range ps {
			p.Kill()
			p.Join(context.Background())
			p.Close()
		}
		for _, o := range outs {
			o.Close()
		}
	}()
	t := time.Now()
	for _, a := range args {
		r, w, err := mp.Pipe(false)
		if err != nil {
			return nil, 0, err
		}
		outs = append(outs, r)
		a.URL, a.Out = c.URL(), w
		p := mp.NewProcess(f, a)
		err = p.Start()
		w.Close()
		if err != nil {
			return nil, 0, err
		}
		ps = append(ps, p)
	}
	// A child that fails ends the others, which may be waiting for it.
	errs := make(chan error, len(ps))
	for _, p := range ps {
		go func() {
			err := p.Join(ctx)
			if err != nil {
				for _, q := range ps {
					q.Kill()
				}
			}
			errs <- err
		}()
	}
	res := make([]T, len(args))
	var rerr error
	for i, o := range outs {
		if err := o.Recv(&res[i]); err != nil && rerr == nil {
			rerr = err
		}
	}
	dt := time.Since(t)
	for range ps {
		if err := <-errs; err != nil {
			return nil, 0, err
		}
	}
	if rerr != nil {
		return nil, 0, rerr
	}
	if check != nil {
		if err := check(ctx, m); err != nil {
			return nil, 0, err
		}
	}
	return res, dt, nil
}

func benchClusterDict(scale float64) ([]Result, error) {
	n := scaled(5000, scale)
	res, _, err := runKVChildren[time.Duration](kvBenchDict, []kvBenchArgs{{N: n}}, nil, nil)
	if err != nil {
		return nil, err
	}
	return []Result{{"cluster_dict", res[0].Seconds() / float64(2*n) * 1e6, "us/op"}}, nil
}

func benchClusterCounter(scale float64) ([]Result, error) {
	n := scaled(5000, scale)
	check := func(ctx context.Context, m *manager.Manager) error {
		v, err := manager.NewValue(ctx, m, 0, manager.Named("bench"))
		if err != nil {
			return err
		}
		got, err := v.Get(ctx)
		if err == nil && got != 2*n {
			err = fmt.Errorf("cluster_counter: %d after 2 x %d increments", got, n)
		}
		return err
	}
	_, dt, err := runKVChildren[int](kvBenchCounter, []kvBenchArgs{{N: n}, {N: n}}, nil, check)
	if err != nil {
		return nil, err
	}
	return []Result{{"cluster_counter", float64(2*n) / dt.Seconds(), "incr/s"}}, nil
}

func benchClusterLockHandoff(scale float64) ([]Result, error) {
	n := scaled(500, scale)
	a, b, err := mp.Pipe(true)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	defer b.Close()
	res, _, err := runKVChildren[[]time.Duration](kvBenchHandoff, []kvBenchArgs{{N: n, First: true, Peer: a}, {N: n, Peer: b}}, nil, nil)
	if err != nil {
		return nil, err
	}
	lat := slices.Concat(res...)
	if len(lat) == 0 {
		return nil, errors.New("cluster_lock_handoff: no handoff measured")
	}
	slices.Sort(lat)
	return []Result{{"cluster_lock_handoff", float64(lat[len(lat)/2].Nanoseconds()) / 1e3, "us (p50)"}}, nil
}

//go:build linux

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/go-mp/mp"
)

type incrArgs struct {
	V    *mp.Value[int64]
	Lock *mp.Lock
	N    int
	// Go and Done, when set, start the increments and report their end,
	// so that the steady rate can be timed without process start-up.
	Go   *mp.Event
	Done *mp.Semaphore
}

// lockedIncr is py_baseline's _locked_incr: n increments under a Lock.
var lockedIncr = mp.RegisterProc("bench.lockedIncr", func(a incrArgs) error {
	ctx := context.Background()
	if a.Go != nil {
		if err := a.Go.Wait(ctx); err != nil {
			return err
		}
		defer a.Done.Release()
	}
	for i := 0; i < a.N; i++ {
		if err := a.Lock.Acquire(ctx); err != nil {
			return err
		}
		a.V.Store(a.V.Load() + 1)
		if err := a.Lock.Release(); err != nil {
			return err
		}
	}
	return nil
})

type floatArgs struct {
	Buf         *mp.RawArray[float64]
	Len         *mp.Value[int32]
	Empty, Full *mp.Semaphore
	Count       int
}

// floatConsumer is py_baseline's _float_consumer: take count messages.
var floatConsumer = mp.RegisterProc("bench.floatConsumer", func(a floatArgs) error {
	ctx := context.Background()
	vals := make([]float64, a.Buf.Len())
	for i := 0; i < a.Count; i++ {
		if err := a.Full.Acquire(ctx); err != nil {
			return err
		}
		n := int(a.Len.Load())
		if err := a.Buf.CopyTo(vals[:n]); err != nil {
			return err
		}
		if err := a.Empty.Release(); err != nil {
			return err
		}
	}
	return nil
})

func init() {
	add(Workload{Name: "value_lock", Doc: "2 processes increment a shared Value under a Lock", Run: benchValueLock})
	add(Workload{Name: "float_channel", Doc: "1000 x 100 000 float64 through a shared array and 2 semaphores", Run: benchFloatChannel})
}

// benchValueLock times, as py_baseline does, from starting the two
// processes to joining them; value_lock_steady times the increments alone,
// ten times as many so that the figure is steady (100 000 take about 5 ms).
func benchValueLock(scale float64) ([]Result, error) {
	n := scaled(100000, scale)
	whole, err := timeValueLock(n, false)
	if err != nil {
		return nil, err
	}
	steady, err := timeValueLock(10*n, true)
	if err != nil {
		return nil, err
	}
	return []Result{
		{"value_lock", float64(2*n) / whole.Seconds() / 1e6, "M incr/s"},
		{"value_lock_steady", float64(20*n) / steady.Seconds() / 1e6, "M incr/s"},
	}, nil
}

func timeValueLock(n int, steady bool) (time.Duration, error) {
	lock, err := mp.NewLock()
	if err != nil {
		return 0, err
	}
	v, err := mp.NewValue[int64](0, mp.WithLock(lock))
	if err != nil {
		return 0, err
	}
	args := incrArgs{V: v, Lock: lock, N: n}
	if steady {
		if args.Go, err = mp.NewEvent(); err != nil {
			return 0, err
		}
		if args.Done, err = mp.NewSemaphore(0); err != nil {
			return 0, err
		}
	}
	ps := []*mp.Process{mp.NewProcess(lockedIncr, args), mp.NewProcess(lockedIncr, args)}
	ctx := context.Background()
	t := time.Now()
	for _, p := range ps {
		if err := p.Start(); err != nil {
			return 0, err
		}
	}
	var dt time.Duration
	if steady {
		time.Sleep(20 * time.Millisecond) // let both reach the start line
		t = time.Now()
		args.Go.Set()
		for range ps {
			if err := args.Done.Acquire(ctx); err != nil {
				return 0, err
			}
		}
		dt = time.Since(t)
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return 0, err
		}
	}
	if !steady {
		dt = time.Since(t)
	}
	if got := v.Load(); got != int64(2*n) {
		return 0, fmt.Errorf("value_lock: %d increments counted, want %d", got, 2*n)
	}
	return dt, nil
}

func benchFloatChannel(scale float64) ([]Result, error) {
	count, size := scaled(1000, scale), 100000
	buf, err := mp.NewRawArray[float64](size)
	if err != nil {
		return nil, err
	}
	blen, err := mp.NewValue[int32](int32(size))
	if err != nil {
		return nil, err
	}
	empty, err := mp.NewSemaphore(1)
	if err != nil {
		return nil, err
	}
	full, err := mp.NewSemaphore(0)
	if err != nil {
		return nil, err
	}
	p := mp.NewProcess(floatConsumer, floatArgs{buf, blen, empty, full, count})
	if err := p.Start(); err != nil {
		return nil, err
	}
	values := make([]float64, size)
	for i := range values {
		values[i] = float64(i)
	}
	ctx := context.Background()
	t := time.Now()
	for i := 0; i < count; i++ {
		if err := empty.Acquire(ctx); err != nil {
			return nil, err
		}
		if err := buf.CopyFrom(values); err != nil {
			return nil, err
		}
		if err := full.Release(); err != nil {
			return nil, err
		}
	}
	if err := p.Join(ctx); err != nil {
		return nil, err
	}
	dt := time.Since(t)
	return []Result{{"float_channel", float64(count*size*8) / dt.Seconds() / 1e9, "GB/s"}}, nil
}

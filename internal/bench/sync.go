//go:build linux

package bench

import (
	"context"
	"time"

	"github.com/go-mp/mp"
)

type pongArgs struct {
	A, B *mp.Semaphore
	N    int
}

var semPong = mp.RegisterProc("bench.semPong", func(a pongArgs) error {
	ctx := context.Background()
	for i := 0; i < a.N; i++ {
		if err := a.A.Acquire(ctx); err != nil {
			return err
		}
		if err := a.B.Release(); err != nil {
			return err
		}
	}
	return nil
})

type barrierArgs struct {
	B *mp.Barrier
	N int
}

var barrierLoop = mp.RegisterProc("bench.barrierLoop", func(a barrierArgs) error {
	ctx := context.Background()
	for i := 0; i < a.N; i++ {
		if _, err := a.B.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
})

func init() {
	add(Workload{Name: "sem_pingpong", Doc: "semaphore hand-off round trip between two processes", Run: benchSemPingPong})
	add(Workload{Name: "barrier", Doc: "2-party barrier cycle between two processes", Run: benchBarrier})
}

func benchSemPingPong(scale float64) ([]Result, error) {
	n := scaled(50000, scale)
	a, err := mp.NewSemaphore(0)
	if err != nil {
		return nil, err
	}
	b, err := mp.NewSemaphore(0)
	if err != nil {
		return nil, err
	}
	p := mp.NewProcess(semPong, pongArgs{a, b, n})
	if err := p.Start(); err != nil {
		return nil, err
	}
	ctx := context.Background()
	t := time.Now()
	for i := 0; i < n; i++ {
		if err := a.Release(); err != nil {
			return nil, err
		}
		if err := b.Acquire(ctx); err != nil {
			return nil, err
		}
	}
	dt := time.Since(t)
	if err := p.Join(ctx); err != nil {
		return nil, err
	}
	return []Result{{"sem_pingpong", dt.Seconds() / float64(n) * 1e6, "us/roundtrip"}}, nil
}

func benchBarrier(scale float64) ([]Result, error) {
	n := scaled(20000, scale)
	b, err := mp.NewBarrier(2, nil, 0)
	if err != nil {
		return nil, err
	}
	p := mp.NewProcess(barrierLoop, barrierArgs{b, n})
	if err := p.Start(); err != nil {
		return nil, err
	}
	ctx := context.Background()
	t := time.Now()
	for i := 0; i < n; i++ {
		if _, err := b.Wait(ctx); err != nil {
			return nil, err
		}
	}
	dt := time.Since(t)
	if err := p.Join(ctx); err != nil {
		return nil, err
	}
	return []Result{{"barrier", dt.Seconds() / float64(n) * 1e6, "us/cycle"}}, nil
}

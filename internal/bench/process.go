//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-mp/mp"
)

var noop = mp.RegisterProc("bench.noop", func(struct{}) error { return nil })

type message struct {
	ID      int    `cbor:"id"`
	Payload string `cbor:"payload"`
}

type echoArgs struct {
	Conn *mp.Conn
	N    int
	// Late delays the echoes, as a child slow to start would (a test's).
	Late time.Duration
}

var echoServer = mp.RegisterProc("bench.echo", func(a echoArgs) error {
	defer a.Conn.Close()
	time.Sleep(a.Late)
	for i := 0; i < a.N; i++ {
		var m message
		if err := a.Conn.Recv(&m); err != nil {
			return err
		}
		if err := a.Conn.Send(&m); err != nil {
			return err
		}
	}
	return nil
})

type sinkArgs struct {
	Conn  *mp.Conn
	Total int64
}

var bytesSink = mp.RegisterProc("bench.sink", func(a sinkArgs) error {
	defer a.Conn.Close()
	buf := make([]byte, 1<<20)
	var got int64
	for got < a.Total {
		n, err := a.Conn.RecvBytesInto(buf, 0)
		if err != nil {
			return err
		}
		got += int64(n)
	}
	return a.Conn.Send(got)
})

func init() {
	add(Workload{Name: "spawn", Doc: "start+join a no-op child", Run: benchSpawn})
	add(Workload{Name: "spawn_warm", Doc: "start+join a no-op child in a spare (mp.SetSpares)", Run: benchSpawnWarm})
	add(Workload{Name: "pipe_rtt", Doc: "small object ping-pong over a Pipe", Run: benchPipeRTT})
	add(Workload{Name: "pipe_bw", Doc: "1 MiB SendBytes stream to a child", Run: benchPipeBW})
}

// BareEnv, when set, asks the binary to exit as soon as main starts: the
// spawn workload measures that bare re-exec as a reference.
const BareEnv = "MP_BENCH_BARE"

func benchSpawn(scale float64) ([]Result, error) {
	n := scaled(100, scale)
	bare, err := timeBareReexec(n)
	if err != nil {
		return nil, err
	}
	if err := spawnNoop(); err != nil { // warm the page cache
		return nil, err
	}
	t := time.Now()
	for i := 0; i < n; i++ {
		if err := spawnNoop(); err != nil {
			return nil, err
		}
	}
	dt := time.Since(t) / time.Duration(n)
	return []Result{
		{"spawn", float64(dt.Nanoseconds()) / 1e6, "ms/process"},
		{"spawn_bare_reexec", float64(bare.Nanoseconds()) / 1e6, "ms/process"},
	}, nil
}

// spawnNoop starts a no-op child and joins it.
func spawnNoop() error {
	p := mp.NewProcess(noop, struct{}{})
	if err := p.Start(); err != nil {
		return err
	}
	return p.Join(context.Background())
}

// benchSpawnWarm times what spawn does when a spare is ready: before each
// Start, SetSpares waits (untimed) for the spare that replaces the one
// the previous Start used. The replacement starts in the background
// during the timed Start and Join, as it would in a program.
func benchSpawnWarm(scale float64) ([]Result, error) {
	n := scaled(100, scale)
	defer mp.SetSpares(0)
	var total time.Duration
	for i := -1; i < n; i++ { // the first warms the page cache
		mp.SetSpares(1)
		t := time.Now()
		if err := spawnNoop(); err != nil {
			return nil, err
		}
		if i >= 0 {
			total += time.Since(t)
		}
	}
	dt := total / time.Duration(n)
	return []Result{{"spawn_warm", float64(dt.Nanoseconds()) / 1e6, "ms/process"}}, nil
}

// timeBareReexec times starting this binary and waiting for it, with no
// mp work in between: the floor for spawn.
func timeBareReexec(n int) (time.Duration, error) {
	env := append(os.Environ(), BareEnv+"=1")
	run := func() error {
		p, err := os.StartProcess("/proc/self/exe", []string{os.Args[0]}, &os.ProcAttr{
			Env: env, Files: []*os.File{nil, os.Stdout, os.Stderr}})
		if err != nil {
			return err
		}
		st, err := p.Wait()
		if err == nil && !st.Success() {
			err = fmt.Errorf("bare re-exec: %v", st)
		}
		return err
	}
	if err := run(); err != nil {
		return 0, err
	}
	t := time.Now()
	for i := 0; i < n; i++ {
		if err := run(); err != nil {
			return 0, err
		}
	}
	return time.Since(t) / time.Duration(n), nil
}

func startWith[A any](f *mp.Func[A, struct{}], mk func(*mp.Conn) A) (*mp.Conn, *mp.Process, error) {
	a, b, err := mp.Pipe(true)
	if err != nil {
		return nil, nil, err
	}
	p := mp.NewProcess(f, mk(b))
	err = p.Start()
	b.Close()
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, p, nil
}

func benchPipeRTT(scale float64) ([]Result, error) {
	dt, err := pipeRTT(scaled(20000, scale), 0)
	if err != nil {
		return nil, err
	}
	return []Result{{"pipe_rtt", float64(dt.Nanoseconds()) / 1e3, "us/roundtrip"}}, nil
}

// pipeRTT returns the mean of n round trips of a small message over a
// Pipe to a child that echoes it, the child late by late (see echoArgs).
// The clock starts after one round trip more: the first one waits for
// the child to start running its target (3.6-8 ms on a 2-core machine,
// where a round trip takes 1-2 µs), which is spawn's cost, not the
// pipe's. Counted in, it was one wait of n, yet a third of the mean at
// -scale 0.3, and the largest part of its spread from run to run.
func pipeRTT(n int, late time.Duration) (time.Duration, error) {
	c, p, err := startWith(echoServer, func(b *mp.Conn) echoArgs { return echoArgs{b, n + 1, late} })
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := message{ID: 1, Payload: "hello"}
	roundTrip := func() error {
		if err := c.Send(&msg); err != nil {
			return err
		}
		var back message
		return c.Recv(&back)
	}
	if err := roundTrip(); err != nil {
		return 0, err
	}
	t := time.Now()
	for i := 0; i < n; i++ {
		if err := roundTrip(); err != nil {
			return 0, err
		}
	}
	dt := time.Since(t) / time.Duration(n)
	if err := p.Join(context.Background()); err != nil {
		return 0, err
	}
	return dt, nil
}

func benchPipeBW(scale float64) ([]Result, error) {
	total := int64(scaled(1<<11, scale)) << 20 // 2 GiB at full scale
	c, p, err := startWith(bytesSink, func(b *mp.Conn) sinkArgs { return sinkArgs{b, total} })
	if err != nil {
		return nil, err
	}
	defer c.Close()
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	t := time.Now()
	for sent := int64(0); sent < total; sent += int64(len(block)) {
		if err := c.SendBytes(block); err != nil {
			return nil, err
		}
	}
	var got int64
	if err := c.Recv(&got); err != nil && err != io.EOF {
		return nil, err
	}
	dt := time.Since(t)
	if err := p.Join(context.Background()); err != nil {
		return nil, err
	}
	if got != total {
		return nil, fmt.Errorf("pipe_bw: child received %d of %d bytes", got, total)
	}
	return []Result{{"pipe_bw", float64(total) / dt.Seconds() / 1e9, "GB/s"}}, nil
}

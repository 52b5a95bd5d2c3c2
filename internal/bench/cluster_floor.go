//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/go-mp/mp/internal/natsnode"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cluster_floor is what cluster_apply_sync costs the engine alone, on the
// same machine and in the same minutes: a task published to a file stream
// of the embedded server, pulled by a worker process that answers over
// core NATS at once (no child process, no mp code), and acknowledged by
// the submitting process, as a cluster pool does. Every cross-process
// hop of a call but the worker's child is in it. cluster_apply_sync over
// cluster_floor is mp's cost relative to the engine's: absolute times
// differ 5× between machines, and much of a round trip is the machine's,
// not the code's. On the 2-core VM where it was written, whose idle CPUs
// halt, a timeline of the floor's calls (clock marks in the three
// processes and in the server) gave a median of 212 us, of which the two
// wake-ups of a process on another CPU, the worker by the server's write
// and the submitting process by the worker's, took 47 and 36.
func init() {
	add(Workload{Name: "cluster_floor", Doc: "bare JetStream round trip, no mp: the floor of cluster_apply_sync (median)", Run: benchClusterFloor})
}

// FloorEnv, when set to a NATS URL, makes the binary the worker of the
// cluster_floor workload (see FloorWorker) instead of mp.
const FloorEnv = "MP_BENCH_FLOOR"

// The floor's stream, its consumer and the subject of its answers.
const (
	floorStream   = "MP_BENCH_FLOOR"
	floorTasks    = "mpfloor.task."
	floorDurable  = "w"
	floorResults  = "mpfloor.res"
	floorAckTo    = "Ack-To"
	floorPullWait = 5 * time.Second
)

func benchClusterFloor(scale float64) ([]Result, error) {
	n := scaled(300, scale)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	node, err := natsnode.Start(ctx, natsnode.Options{})
	if err != nil {
		return nil, err
	}
	defer node.Shutdown()
	// In-process, as a cluster pool reaches its embedded server.
	nc, err := nats.Connect("", nats.InProcessServer(node.Server()))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: floorStream, Subjects: []string{floorTasks + ">"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	if _, err := js.CreateConsumer(ctx, floorStream, jetstream.ConsumerConfig{Durable: floorDurable,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute}); err != nil {
		return nil, err
	}
	res, err := nc.SubscribeSync(floorResults)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// One worker: the call always finds it waiting, as the pool's warm
	// worker (see package cluster) is meant to be.
	w := exec.Command(exe)
	w.Env = append(os.Environ(), FloorEnv+"="+node.URL())
	w.Stderr = os.Stderr
	if err := w.Start(); err != nil {
		return nil, err
	}
	defer func() {
		// Its connection closes with the server; it then exits.
		nc.Close()
		node.Shutdown()

		done := make(chan struct{})
		go func() { w.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			w.Process.Kill()
			<-done
		}
	}()
	call := func(i int, wait time.Duration) error {
		want := strconv.Itoa(i)
		if err := nc.Publish(floorTasks+want, []byte(want)); err != nil {
			return err
		}
		m, err := res.NextMsg(wait)
		if err != nil {
			return fmt.Errorf("cluster_floor: task %d: %w", i, err)
		}
		if string(m.Data) != want {
			return fmt.Errorf("cluster_floor: got %q for %q", m.Data, want)
		}
		return nc.Publish(m.Header.Get(floorAckTo), []byte("+ACK"))
	}
	// The first call waits for the worker to start.
	if err := call(-1, time.Minute); err != nil {
		return nil, err
	}
	times := make([]time.Duration, n)
	for i := range times {
		t := time.Now()
		if err := call(i, 10*time.Second); err != nil {
			return nil, err
		}
		times[i] = time.Since(t)
	}
	slices.Sort(times)
	return []Result{{"cluster_floor", float64(times[n/2].Nanoseconds()) / 1e3, "us/task"}}, nil
}

// FloorWorker is the worker of cluster_floor, in a process of its own: it
// answers each task of the floor's stream at url with the task's data,
// over core NATS, then asks for the next task. It returns the
// process's exit status once its connection closes (the benchmark ended,
// or its process died).
func FloorWorker(url string) int {
	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster_floor worker:", err)
		return 1
	}
	defer nc.Close()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster_floor worker:", err)
		return 1
	}
	next := "$JS.API.CONSUMER.MSG.NEXT." + floorStream + "." + floorDurable
	req := fmt.Appendf(nil, `{"batch":1,"expires":%d}`, floorPullWait.Nanoseconds())
	pull := func() error { return nc.PublishRequest(next, inbox, req) }
	if err := pull(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster_floor worker:", err)
		return 1
	}
	for {
		m, err := sub.NextMsg(floorPullWait + time.Second)
		switch {
		case errors.Is(err, nats.ErrTimeout):
			err = pull()
		case err != nil:
		case m.Reply == "":
			err = pull() // a status: the request expired
		default:
			// The answer, then the next request, in one write.
			nc.PublishMsg(&nats.Msg{Subject: floorResults, Data: m.Data, Header: nats.Header{floorAckTo: []string{m.Reply}}})
			err = pull()
		}
		if err != nil {
			if nc.IsClosed() {
				return 0 // the benchmark ended
			}
			fmt.Fprintln(os.Stderr, "cluster_floor worker:", err)
			return 1
		}
	}
}

//go:build linux

package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StatusOptions say how ReadStatus reaches a NATS server.
type StatusOptions struct {
	// URL is the server's address (several separated by commas).
	URL string
	// NATS are the client's options: authentication, TLS, its name.
	NATS []nats.Option
	// Listen is how long ReadStatus listens for the workers' heartbeats
	// (each worker sends one every second); 0 lists no workers.
	Listen time.Duration
}

// Status is what a NATS server with JetStream holds: its streams and
// their consumers (mp's and any other), the pools of package cluster
// found there, and the workers heard.
type Status struct {
	Server, ClusterName, Version string
	Streams                      []StreamStatus
	Pools                        []PoolStatus
	// Workers are those heard within StatusOptions.Listen, sorted by id.
	Workers []WorkerStatus
}

// StreamStatus is a stream and its consumers.
type StreamStatus struct {
	Info      *jetstream.StreamInfo
	Consumers []*jetstream.ConsumerInfo
}

// PoolStatus is the queue of one pool name and build (the fingerprint of
// the registered targets): its tasks queued and running, and how many
// free worker slots are asking for one.
type PoolStatus struct {
	Pool, Build     string
	Queued, Running uint64
	Asking          int
}

// WorkerStatus is a worker heard from.
type WorkerStatus struct {
	ID, Pool, Build string
	Slots           uint64
}

// ReadStatus connects to o.URL and reads its status. ctx bounds it all,
// o.Listen included.
func ReadStatus(ctx context.Context, o StatusOptions) (*Status, error) {
	opts := slices.Clone(o.NATS)
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	st := &Status{Server: nc.ConnectedServerName(), ClusterName: nc.ConnectedClusterName(), Version: nc.ConnectedServerVersion()}
	// Listen while the streams are read.
	hbs := make(chan *nats.Msg, 1024)
	var sub *nats.Subscription
	if o.Listen > 0 {
		if sub, err = nc.ChanSubscribe(hbPrefix+">", hbs); err != nil {
			return nil, err
		}
	}
	heard := time.Now()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		ss := StreamStatus{Info: si}
		s, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			return nil, err
		}
		cl := s.ListConsumers(ctx)
		for ci := range cl.Info() {
			ss.Consumers = append(ss.Consumers, ci)
			if si.Config.Name == taskStream && strings.HasPrefix(ci.Name, taskDurablePrefix) {
				pool, build := poolOfDurable(ci.Name)
				st.Pools = append(st.Pools, PoolStatus{Pool: pool, Build: build, Queued: ci.NumPending,
					Running: uint64(ci.NumAckPending), Asking: ci.NumWaiting})
			}
		}
		if err := cl.Err(); err != nil {
			return nil, fmt.Errorf("consumers of %s: %w", si.Config.Name, err)
		}
		st.Streams = append(st.Streams, ss)
	}
	if err := streams.Err(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	if sub == nil {
		return st, nil
	}
	select {
	case <-time.After(time.Until(heard.Add(o.Listen))):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	sub.Unsubscribe()
	st.Workers = workersHeard(hbs)
	return st, nil
}

// workersHeard returns the workers whose heartbeats are in hbs, sorted by
// id; a message that is no heartbeat of this version is skipped.
func workersHeard(hbs chan *nats.Msg) []WorkerStatus {
	seen := map[string]WorkerStatus{}
	for len(hbs) > 0 {
		m := <-hbs
		parts := strings.Split(m.Subject, ".") // mp.hb.POOL.FP
		var h heartbeat
		if len(parts) != 4 || h.parse(m.Data) != nil {
			continue
		}
		seen[h.ID] = WorkerStatus{ID: h.ID, Pool: parts[2], Build: parts[3], Slots: h.Slots}
	}
	ws := make([]WorkerStatus, 0, len(seen))
	for _, w := range seen {
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b WorkerStatus) int { return strings.Compare(a.ID, b.ID) })
	return ws
}

// poolOfDurable splits a tasks' durable name, taskDurable's "mpw_POOL_FP"
// (POOL may hold "_", FP does not).
func poolOfDurable(name string) (pool, fp string) {
	rest := strings.TrimPrefix(name, taskDurablePrefix)
	i := strings.LastIndexByte(rest, '_')
	if i < 0 {
		return rest, "?"
	}
	return rest[:i], rest[i+1:]
}

//go:build linux

package natstest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/leakcheck"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) {
	Main()
	leakcheck.Main(m)
}

// progress records which items a consumer has seen and when each was
// first seen.
type progress struct {
	mu    sync.Mutex
	seen  map[string]int // item -> deliveries
	first []time.Time    // when each new item was first seen, in order
}

func (p *progress) saw(item string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[item] == 0 {
		p.first = append(p.first, time.Now())
	}
	p.seen[item]++
}

func (p *progress) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.first)
}

// stall returns the longest time without a new item from since on, and
// how long after since the first new item came.
func (p *progress) stall(since time.Time) (longest, firstAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := since
	for _, at := range p.first {
		if at.Before(since) {
			continue
		}
		if firstAfter == 0 {
			firstAfter = at.Sub(since)
		}
		longest = max(longest, at.Sub(prev))
		prev = at
	}
	return longest, firstAfter
}

// failoverItems is how many items a failover test sends; window bounds
// how far the publisher runs ahead of the consumer, so that both are at
// work when the leader fails.
const (
	failoverItems = 3000
	window        = 200
)

// runFailover runs a work queue on a 3-node cluster (file storage,
// replicas 3, a durable pull consumer acknowledging each item), with the
// publisher and the consumer connected to the stream leader's node; once
// a third of the items are consumed, fail(leader) makes the leader fail.
// Every item must then be consumed, within the test's bound; the stall
// is reported.
func runFailover(t *testing.T, fail func(leader *Node)) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	begin := time.Now()
	c := StartCluster(ctx, t, 3)
	t.Logf("cluster ready after %v", time.Since(begin))
	js, err := jetstream.New(c.Connect(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "F", Subjects: []string{"f.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second, Replicas: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	leader, err := c.StreamLeader(ctx, js, "F")
	if err != nil {
		t.Fatal(err)
	}
	cleader, err := c.ConsumerLeader(ctx, js, "F", "w")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stream leader %s, consumer leader %s", leader.Name, cleader.Name)

	// The workers' connection starts on the node that will fail.
	wjs, err := jetstream.New(c.Connect(t, leader))
	if err != nil {
		t.Fatal(err)
	}
	p := &progress{seen: map[string]int{}}
	var wg sync.WaitGroup
	var pubRetries, fetchErrs int
	wg.Add(2)
	go func() { // publisher
		defer wg.Done()
		for i := range failoverItems {
			for i-p.count() >= window && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			id := fmt.Sprint(i)
			// A publish whose ack was lost is sent again with the same
			// id: JetStream keeps one.
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := wjs.Publish(pctx, "f.x", []byte(id), jetstream.WithMsgID(id))
				pcancel()
				if err == nil {
					break
				}
				pubRetries++
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	go func() { // consumer
		defer wg.Done()
		var cons jetstream.Consumer
		for ctx.Err() == nil && p.count() < failoverItems {
			if cons == nil {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				cons, _ = wjs.Consumer(rctx, "F", "w")
				rcancel()
				if cons == nil {
					fetchErrs++
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			b, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				fetchErrs++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for m := range b.Messages() {
				p.saw(string(m.Data()))
				m.Ack()
			}
		}
	}()

	for p.count() < failoverItems/3 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	failed := time.Now()
	atFail := p.count()
	fail(leader)
	wg.Wait()
	if got := p.count(); got != failoverItems {
		t.Fatalf("%d of %d items consumed (%d before the failure) when the bound ran out: items lost or progress stalled", got, failoverItems, atFail)
	}
	longest, firstAfter := p.stall(failed)
	redelivered := 0
	for _, n := range p.seen {
		redelivered += n - 1
	}
	t.Logf("every item consumed: %d before the failure; after it, the first new item came in %v, the longest stall was %v; %d items delivered again, %d publish retries, %d failed fetches; all in %v",
		atFail, firstAfter.Round(time.Millisecond), longest.Round(time.Millisecond), redelivered, pubRetries, fetchErrs, time.Since(failed).Round(time.Millisecond))
	if after, err := c.StreamLeader(ctx, js, "F"); err == nil {
		t.Logf("stream leader now %s", after.Name)
	}
}

// TestFailoverKillLeader SIGKILLs the stream leader mid-run, with the
// clients connected to it: no item is lost and progress resumes under a
// new leader.
func TestFailoverKillLeader(t *testing.T) {
	runFailover(t, func(leader *Node) {
		leader.Kill()
		t.Logf("SIGKILLed %s", leader.Name)
	})
}

// TestFailoverStopLeader SIGSTOPs the stream leader mid-run for 10 s,
// with the clients connected to it, then SIGCONTs it: no item is lost,
// and progress resumes (under a new leader while it hangs, or after).
func TestFailoverStopLeader(t *testing.T) {
	runFailover(t, func(leader *Node) {
		if err := leader.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("SIGSTOPped %s", leader.Name)
		time.Sleep(10 * time.Second)
		if err := leader.Cont(); err != nil {
			t.Fatal(err)
		}
		t.Logf("SIGCONTed %s", leader.Name)
	})
}

// TestStartClusterPortTaken: a port of the cluster taken between its
// choice and its node's start (here on purpose, by the test, in the
// first attempt) makes StartCluster start the cluster again on other
// ports, instead of failing the test that wanted a cluster.
func TestStartClusterPortTaken(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var held net.Listener
	var attempts []int
	testHookClusterPorts = func(attempt int, ports []int) {
		attempts = append(attempts, attempt)
		if attempt == 1 {
			l, err := net.Listen("tcp", fmt.Sprint("127.0.0.1:", ports[2]))
			if err != nil {
				t.Errorf("taking port %d: %v", ports[2], err)
				return
			}
			held = l
		}
	}
	defer func() { testHookClusterPorts = nil }()
	c := StartCluster(ctx, t, 3)
	if held != nil {
		held.Close()
	}
	if !slices.Equal(attempts, []int{1, 2}) {
		t.Fatalf("attempts %v, want [1 2]", attempts)
	}
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	nc := c.Connect(t, nil)
	defer nc.Close()
	if err := waitMetaLeader(ctx, nc); err != nil {
		t.Fatal(err)
	}
}

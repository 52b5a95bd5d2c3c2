//go:build linux

package manager

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/codec"
)

// FuzzWire checks that parsing never panics, and that what it accepts is
// consistent.
func FuzzWire(f *testing.F) {
	for _, seed := range [][]byte{
		{0x82, 0x07, 0x01},
		{0x83, 0x08, 0x01, 0x61, 'k'},
		appendToken(nil, &token{Network: "unix", Address: "/tmp/x", Instance: 7, ID: 3, Kind: "dict"}),
		append([]byte{0x82, 0x01}, appendToken(nil, &token{Network: "tcp", Address: "h:1", Instance: 1, ID: 1, Kind: "list"})...),
		{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0xd9, 0x6b, 0x76, 0x85},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := codec.Skip(b, 0)
		if err == nil && (n <= 0 || n > len(b)) {
			t.Fatalf("skip = %d for %d bytes", n, len(b))
		}
		items, err := codec.SplitMessage(nil, b)
		if err == nil {
			total := 0
			for _, it := range items {
				total += len(it)
				if m, err := codec.Skip(it, 0); err != nil || m != len(it) {
					t.Fatalf("item %x does not skip to its length: %d, %v", it, m, err)
				}
			}
			if total > len(b) {
				t.Fatal("items longer than the message")
			}
		}
		if err == nil && n == len(b) {
			walkTokens(b, func(tok *token) {
				re := appendToken(nil, tok)
				if got, err := parseToken(re); err != nil || got != *tok {
					t.Fatalf("token %+v does not round-trip: %+v, %v", *tok, got, err)
				}
			})
		}
		parseToken(b)
		codec.ReadInt(b)
		codec.ReadText(b)
	})
}

// newFuzzEnv starts an in-process server with an object of each kind;
// the test's cleanup stops it.
func newFuzzEnv(f *testing.F) *fuzzEnv {
	l, err := connection.Listen("unix", "", nil)
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	ctx := context.Background()
	m, err := Connect(ctx, "unix", l.Addr().String(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		m.Close()
		s.Shutdown()
		<-served
	})
	mk := []func() error{
		func() error { _, err := NewDict[string, int](ctx, m); return err },
		func() error { _, err := NewList(ctx, m, []int{1, 2}); return err },
		func() error { _, err := NewNamespace(ctx, m); return err },
		func() error { _, err := NewValue(ctx, m, 1); return err },
		func() error { _, err := NewArray(ctx, m, []int{1}); return err },
		func() error { _, err := NewQueue[int](ctx, m, 1); return err },
		func() error { _, err := NewJoinableQueue[int](ctx, m, 0); return err },
		func() error { _, err := NewLock(ctx, m); return err },
		func() error { _, err := NewRLock(ctx, m); return err },
		func() error { _, err := NewSemaphore(ctx, m, 1); return err },
		func() error { _, err := NewBoundedSemaphore(ctx, m, 1); return err },
		func() error { _, err := NewCondition(ctx, m, nil); return err },
		func() error { _, err := NewEvent(ctx, m); return err },
		func() error { _, err := NewBarrier(ctx, m, 2, 0); return err },
	}
	e := &fuzzEnv{s: s, m: m, addr: l.Addr().String()}
	for _, mkObj := range mk {
		if err := mkObj(); err != nil {
			f.Fatal(err)
		}
		s.mu.RLock()
		for id := range s.objects {
			if !slices.Contains(e.ids, id) {
				e.ids = append(e.ids, id)
			}
		}
		s.mu.RUnlock()
	}
	return e
}

type fuzzEnv struct {
	s    *Server
	m    *Manager
	addr string
	ids  []uint64 // of the objects, in the order made
}

// realID replaces a request's object id k in 1..len(ids) with ids[k-1]:
// ids are random, and the seeds name the objects by their rank.
func (e *fuzzEnv) realID(req []byte) []byte {
	items, err := codec.SplitMessage(nil, req)
	if err != nil || len(items) < 2 {
		return req
	}
	k, _, err := codec.ReadUint(items[1])
	if err != nil || k == 0 || k > uint64(len(e.ids)) {
		return req
	}
	b := codec.AppendHead(nil, 4, uint64(len(items)))
	b = append(b, items[0]...)
	b = codec.AppendUint(b, e.ids[k-1])
	for _, it := range items[2:] {
		b = append(b, it...)
	}
	return b
}

// fuzzHello is a hello request: session 1…16, pid 1, this protocol's
// version, network "unix", address "".
var fuzzHello = slices.Concat(
	[]byte{0x87, 0x01, 0x00, 0x50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x01},
	codec.AppendUint(nil, protocolVersion),
	[]byte{0x64, 'u', 'n', 'i', 'x', 0x60})

// FuzzRequest sends arbitrary requests to a live server: it must neither
// crash nor stop serving. Each request goes on a connection of its own,
// closed right after, which also cancels any wait it started.
func FuzzRequest(f *testing.F) {
	// A valid request of each operation, on each object.
	for op := range numOps {
		for id := uint64(1); id <= 14; id++ {
			for _, args := range [][]byte{nil, {0x00}, {0x20, 0x01}, {0x61, 'k', 0x05}, {0x82, 0x01, 0x02}} {
				var items [][]byte
				for i := 0; i < len(args); {
					n, err := codec.Skip(args[i:], 0)
					if err != nil {
						break
					}
					items = append(items, args[i:i+n])
					i += n
				}
				b := codec.AppendHead(nil, 4, uint64(2+len(items)))
				b = codec.AppendUint(b, op)
				b = codec.AppendUint(b, id)
				for _, it := range items {
					b = append(b, it...)
				}
				f.Add(b)
			}
		}
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, req []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := connection.Dial(ctx, "unix", e.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SendBytes(fuzzHello)
		c.RecvBytes(0)
		c.SendBytes(e.realID(req))
		if ok, _ := c.Poll(time.Millisecond); ok {
			c.RecvBytes(0)
		}
		c.Close()
		if _, err := e.m.Stats(ctx); err != nil {
			t.Fatalf("the server stopped serving: %v", err)
		}
	})
}

package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
)

// Tests of clients that break the rules (issue 10 points 6, 8 and 9),
// against a server in this process.

// serveHere serves s on a new listener of network ("unix" or "tcp") until
// the test ends, and returns a Manager connected to it.
func serveHere(t *testing.T, s *Server, network string) *Manager {
	t.Helper()
	addr := ""
	if network == "tcp" {
		addr = "127.0.0.1:0"
	}
	l, err := connection.Listen(network, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		s.Shutdown()
		<-served
	})
	return connectHere(t, network, l.Addr().String())
}

// connectHere is another client process's Manager, closed when the test
// ends.
func connectHere(t *testing.T, network, address string) *Manager {
	t.Helper()
	m, err := Connect(hostileCtx(t), network, address, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func hostileCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The case of issue 10 point 9: a Dict.Set of a value over the server's
// limit (256 MiB by default; 1 MiB here, the same path) used to drop the
// client, with its objects and locks. It fails with mp.ErrMessageTooLong
// before anything is sent, and the client keeps its connection, its
// objects and its lock.
func TestOversizedRequestRefused(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ctx := hostileCtx(t)
			m := serveHere(t, &Server{MaxMessage: 1 << 20}, network)
			l, err := NewLock(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			d, err := NewDict[string, []byte](ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			err = d.Set(ctx, "big", make([]byte, 1<<20+1))
			if !errors.Is(err, mp.ErrMessageTooLong) || errors.Is(err, ErrManagerGone) {
				t.Fatalf("Set of a value over the limit: %v, want mp.ErrMessageTooLong", err)
			}
			if err := d.Set(ctx, "small", []byte("x")); err != nil {
				t.Fatalf("Set after the refusal: %v", err)
			}
			if n, err := d.Len(ctx); err != nil || n != 1 {
				t.Fatalf("Len = %d, %v; want 1", n, err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatalf("the lock taken before the refusal: %v", err)
			}
			if n := OpenConns(m); n != 1 {
				t.Fatalf("%d connections open, want the first one still", n)
			}
		})
	}
}

// A request over the limit that arrives anyway (from a client that does
// not check, or believes another limit) is read and thrown away by the
// server, which answers mp.ErrMessageTooLong and goes on serving the
// connection: over the socket, and over the rings, where the request is
// many times the ring's size.
func TestOversizedRequestAnswered(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ctx := hostileCtx(t)
			m := serveHere(t, &Server{MaxMessage: 1 << 20}, network)
			cc, err := m.c.get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer m.c.put(cc)
			if got := cc.c.maxSend; got != 1<<20 {
				t.Fatalf("the hello gave a limit of %d, want %d", got, 1<<20)
			}
			cc.c.maxSend = 0 // a client that does not check
			big := appendHead(nil, 2, 4<<20)
			big = append(big, make([]byte, 4<<20)...)
			for range 2 {
				cc.start(opPing, 0, 1)
				cc.arg(raw(big))
				if err := cc.roundTrip(ctx); !errors.Is(err, mp.ErrMessageTooLong) {
					t.Fatalf("a 4 MiB request to a server taking 1 MiB: %v, want mp.ErrMessageTooLong", err)
				}
				cc.start(opPing, 0, 0)
				if err := cc.roundTrip(ctx); err != nil {
					t.Fatalf("a request after the refused one: %v", err)
				}
			}
			if cc.broken {
				t.Fatal("the connection was given up")
			}
		})
	}
}

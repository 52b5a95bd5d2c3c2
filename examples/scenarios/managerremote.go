//go:build linux

package scenarios

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

type remotePutArgs struct {
	Address string // where the manager listens
	Authkey []byte // its key
	Jobs    []string
}

// remotePut is "another program": it is given nothing but the manager's
// address and key, connects over TCP and puts jobs into the queue named
// "jobs" (which it makes, unless the consumer made it first).
var remotePut = mp.RegisterProc("scenarios.remotePut", func(a remotePutArgs) error {
	ctx := context.Background()
	m, err := manager.Connect(ctx, "tcp", a.Address, a.Authkey)
	if err != nil {
		return err
	}
	defer m.Close()
	q, err := manager.NewQueue[string](ctx, m, 0, manager.Named("jobs"))
	if err != nil {
		return err
	}
	for _, job := range a.Jobs {
		if err := q.Put(ctx, job); err != nil {
			return err
		}
	}
	return nil
})

// ManagerRemote serves a queue over TCP (on 127.0.0.1 here; a manager
// reachable from other machines must be given an authkey, as this one
// is). A producer that shares nothing with the consumer but the address
// and the key connects and puts jobs; the consumer gets them:
//
//	a manager serves on tcp 127.0.0.1, with an authkey of its own
//	another process connected with the address and the key, and put 3 jobs
//	got "resize photo-1.jpg"
//	got "resize photo-2.jpg"
//	got "resize photo-3.jpg"
//	a client with a wrong key is refused: true
func ManagerRemote(ctx context.Context, w io.Writer) error {
	key := make([]byte, 32)
	rand.Read(key)
	server, err := manager.Start(ctx, &manager.Options{Network: "tcp", Address: "127.0.0.1:0", Authkey: key})
	if err != nil {
		return err
	}
	defer server.Close()
	fmt.Fprintln(w, "a manager serves on tcp 127.0.0.1, with an authkey of its own")

	// The consumer connects as any program would: address and key.
	m, err := manager.Connect(ctx, "tcp", server.Address(), key)
	if err != nil {
		return err
	}
	defer m.Close()
	q, err := manager.NewQueue[string](ctx, m, 0, manager.Named("jobs"))
	if err != nil {
		return err
	}
	jobs := []string{"resize photo-1.jpg", "resize photo-2.jpg", "resize photo-3.jpg"}
	p := mp.NewProcess(remotePut, remotePutArgs{Address: server.Address(), Authkey: key, Jobs: jobs})
	if err := p.Start(); err != nil {
		return err
	}
	defer cleanup(p)
	if err := p.Join(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "another process connected with the address and the key, and put %d jobs\n", len(jobs))
	for range jobs {
		job, err := q.Get(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "got %q\n", job)
	}
	_, err = manager.Connect(ctx, "tcp", server.Address(), []byte("a wrong key"))
	fmt.Fprintf(w, "a client with a wrong key is refused: %v\n", errors.Is(err, mp.ErrAuthentication))
	return nil
}

//go:build linux

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/go-mp/mp/manager"
)

func init() {
	add(Workload{
		Name:   "manager_leave",
		Doc:    "a client connects to a manager holding K objects, makes one call and leaves (K = 1, 1k, 10k, 100k)",
		Run:    benchManagerLeave,
		Growth: true,
	})
}

// leaveSizes are the numbers of objects the server holds, with the
// suffixes of the results' names.
var leaveSizes = []struct {
	objects int
	suffix  string
}{{1, "1"}, {1000, "1k"}, {10000, "10k"}, {100000, "100k"}}

// benchManagerLeave measures a short-lived client of a manager whose
// server holds more and more objects (Dicts, made by this process, which
// stays connected): each cycle connects a new Manager (a new session: the
// dial, the authentication and the hello), looks up a named Dict and gets
// a key from it (two calls, the lookup taking a reference), closes the
// Manager, and waits until the server has ended the session (its count
// of clients is back to 1), so that the server's work for the leaving
// client is in the cycle. The result is milliseconds per cycle, one per
// number of objects; scale shrinks the number of cycles, not of objects.
func benchManagerLeave(scale float64) ([]Result, error) {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	const name = "manager_leave"
	shared, err := manager.NewDict[string, int](ctx, m, manager.Named(name))
	if err != nil {
		return nil, err
	}
	if err := shared.Set(ctx, "k", 1); err != nil {
		return nil, err
	}
	cycle := func() error {
		c, err := manager.Connect(ctx, m.Network(), m.Address(), nil)
		if err != nil {
			return err
		}
		d, err := manager.NewDict[string, int](ctx, c, manager.Named(name))
		if err == nil {
			_, _, err = d.Get(ctx, "k")
		}
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		for {
			st, err := m.Stats(ctx)
			if err != nil {
				return err
			}
			if st.Clients == 1 {
				return nil
			}
		}
	}
	var held []*manager.Dict[int, int] // objects is len(held) + 1 (shared)
	var res []Result
	for _, sz := range leaveSizes {
		for len(held)+1 < sz.objects {
			d, err := manager.NewDict[int, int](ctx, m)
			if err != nil {
				return nil, err
			}
			held = append(held, d)
		}
		if st, err := m.Stats(ctx); err != nil {
			return nil, err
		} else if st.Objects != sz.objects {
			return nil, fmt.Errorf("manager_leave: the server holds %d objects, want %d", st.Objects, sz.objects)
		}
		for range 10 { // warm up
			if err := cycle(); err != nil {
				return nil, err
			}
		}
		n := scaled(500, scale)
		t := time.Now()
		for range n {
			if err := cycle(); err != nil {
				return nil, err
			}
		}
		ms := time.Since(t).Seconds() * 1e3 / float64(n)
		res = append(res, Result{"manager_leave_" + sz.suffix, ms, "ms/client"})
	}
	return res, nil
}

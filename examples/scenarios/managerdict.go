//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

type managerRecordArgs struct {
	Pids *manager.Dict[string, int] // worker name → pid
	List *manager.List[int]         // pids, in the order the workers got there
	Name string
}

// managerRecord writes the worker's pid into the manager's Dict and List.
// The proxies arrived as arguments; they connect to the manager on first
// use, with the authkey this child inherited.
var managerRecord = mp.RegisterProc("scenarios.managerRecord", func(a managerRecordArgs) error {
	ctx := context.Background()
	if err := a.Pids.Set(ctx, a.Name, os.Getpid()); err != nil {
		return err
	}
	return a.List.Append(ctx, os.Getpid())
})

// ManagerDict starts a manager process, which holds a Dict and a List, and
// ten workers that write their pid into both through proxies passed as
// arguments, as with Python's Manager().dict() and .list():
//
//	a manager process serves a Dict and a List to 10 workers
//	the dict has 10 keys: worker-0 worker-1 ... worker-9
//	the list has 10 pids, in the order the workers wrote them
//	each worker's pid is under its name and once in the list: true
func ManagerDict(ctx context.Context, w io.Writer) error {
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	pids, err := manager.NewDict[string, int](ctx, m)
	if err != nil {
		return err
	}
	list, err := manager.NewList[int](ctx, m, nil)
	if err != nil {
		return err
	}
	const workers = 10
	want := map[string]int{}
	var procs []*mp.Process
	for i := range workers {
		name := fmt.Sprintf("worker-%d", i)
		p := mp.NewProcess(managerRecord, managerRecordArgs{Pids: pids, List: list, Name: name})
		if err := p.Start(); err != nil {
			return err
		}
		defer cleanup(p)
		procs = append(procs, p)
		want[name] = p.Pid()
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "a manager process serves a Dict and a List to %d workers\n", workers)

	got, err := pids.Map(ctx)
	if err != nil {
		return err
	}
	keys, err := pids.Keys(ctx)
	if err != nil {
		return err
	}
	slices.Sort(keys) // they are in the order the workers got there
	fmt.Fprintf(w, "the dict has %d keys: %s\n", len(keys), strings.Join(keys, " "))
	order, err := list.All(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "the list has %d pids, in the order the workers wrote them\n", len(order))
	ok := len(got) == workers && len(order) == workers
	for name, pid := range want {
		ok = ok && got[name] == pid && slices.Contains(order, pid)
	}
	fmt.Fprintf(w, "each worker's pid is under its name and once in the list: %v\n", ok)
	return nil
}

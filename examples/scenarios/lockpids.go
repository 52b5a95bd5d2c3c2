//go:build linux

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-mp/mp"
)

// lockEntry is one line of the log the workers keep in shared memory,
// written inside the critical section.
type lockEntry struct {
	Worker int32
	Pid    int32
	Enter  int32 // 1 on entering the section, 0 on leaving it
	Inside int32 // how many processes were inside at that moment
}

type lockArgs struct {
	Worker int
	Lock   *mp.Lock
	Go     *mp.Event // raised once every worker has started
	Log    *mp.RawArray[lockEntry]
	Next   *mp.RawValue[int64] // the next free entry of Log
	Inside *mp.RawValue[int64] // processes inside the section
}

// lockWorker takes the lock, notes its pid in the log on entering and on
// leaving the section, and spends a while inside: without the lock the
// others would come in meanwhile. The log and the counters are raw shared
// memory: only the lock keeps their updates apart.
var lockWorker = mp.RegisterProc("scenarios.lockWorker", func(a lockArgs) error {
	ctx := context.Background()
	if err := a.Go.Wait(ctx); err != nil {
		return err
	}
	if err := a.Lock.Acquire(ctx); err != nil {
		return err
	}
	defer a.Lock.Release()
	log, next, inside := a.Log.Slice(), a.Next.Ptr(), a.Inside.Ptr()
	if log == nil || next == nil || inside == nil {
		return errors.New("lock worker: shared memory closed")
	}
	note := func(enter int32) {
		log[*next] = lockEntry{Worker: int32(a.Worker), Pid: int32(mp.CurrentProcess().Pid),
			Enter: enter, Inside: int32(*inside)}
		*next++
	}
	*inside++
	note(1)
	time.Sleep(10 * time.Millisecond)
	note(0)
	*inside--
	return nil
})

// LockPids runs four workers that each enter a critical section guarded by
// a shared Lock and log their pid there. The log shows the sections one
// after another, each entered and left by the same worker with no one else
// inside (the order of the workers varies):
//
//	worker 2 (pid 1234) enters the critical section
//	worker 2 (pid 1234) leaves the critical section
//	worker 0 (pid 1232) enters the critical section
//	...
//	4 critical sections, one at a time: never more than 1 process inside
func LockPids(ctx context.Context, w io.Writer) error {
	const workers = 4
	lock, err := mp.NewLock()
	if err != nil {
		return err
	}
	start, err := mp.NewEvent()
	if err != nil {
		return err
	}
	log, err := mp.NewRawArray[lockEntry](2 * workers)
	if err != nil {
		return err
	}
	defer log.Close()
	next, err := mp.NewRawValue[int64](0)
	if err != nil {
		return err
	}
	defer next.Close()
	inside, err := mp.NewRawValue[int64](0)
	if err != nil {
		return err
	}
	defer inside.Close()

	ps := make([]*mp.Process, workers)
	for i := range workers {
		p := mp.NewProcess(lockWorker, lockArgs{Worker: i, Lock: lock, Go: start, Log: log, Next: next, Inside: inside})
		if err := p.Start(); err != nil {
			return err
		}
		defer cleanup(p)
		ps[i] = p
	}
	if err := start.Set(); err != nil { // all of them rush for the lock
		return err
	}
	for _, p := range ps {
		if err := p.Join(ctx); err != nil {
			return err
		}
	}

	// The workers have exited: the log is the parent's to read.
	if n := next.Load(); n != 2*workers {
		return fmt.Errorf("the log has %d entries, want %d", n, 2*workers)
	}
	seen := map[int32]bool{}
	for i := 0; i < 2*workers; i += 2 {
		in, out := log.Slice()[i], log.Slice()[i+1]
		if in.Enter != 1 || out.Enter != 0 || in.Worker != out.Worker || in.Pid != out.Pid || seen[in.Worker] {
			return fmt.Errorf("sections overlap: %+v then %+v", in, out)
		}
		if in.Inside != 1 || out.Inside != 1 {
			return fmt.Errorf("more than one process inside: %+v, %+v", in, out)
		}
		if int(in.Pid) != ps[in.Worker].Pid() {
			return fmt.Errorf("worker %d logged pid %d, its pid is %d", in.Worker, in.Pid, ps[in.Worker].Pid())
		}
		seen[in.Worker] = true
		fmt.Fprintf(w, "worker %d (pid %d) enters the critical section\n", in.Worker, in.Pid)
		fmt.Fprintf(w, "worker %d (pid %d) leaves the critical section\n", out.Worker, out.Pid)
	}
	fmt.Fprintf(w, "%d critical sections, one at a time: never more than 1 process inside\n", workers)
	return nil
}

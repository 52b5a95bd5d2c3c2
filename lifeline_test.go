//go:build linux

package mp_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

type spawnArgs struct {
	Out  *mp.Conn
	Wait bool // sleep after starting the children instead of returning
}

// spawner starts a daemon and a non-daemon child that both sleep, reports
// their pids, then sleeps or returns.
var spawner = mp.RegisterProc("test.spawner", func(a spawnArgs) error {
	defer a.Out.Close()
	d := mp.NewProcess(fail, "sleep")
	d.Daemon = true
	if err := d.Start(); err != nil {
		return err
	}
	n := mp.NewProcess(fail, "sleep")
	if a.Wait {
		if err := n.Start(); err != nil {
			return err
		}
	}
	if err := a.Out.Send([2]int{d.Pid(), n.Pid()}); err != nil {
		return err
	}
	if a.Wait {
		time.Sleep(time.Minute)
	}
	return nil
})

// adoptOrphans makes this process the reaper of orphaned descendants, so
// that the test can see grandchildren exit.
func adoptOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// reapWithin waits up to d for the adopted process pid to exit.
func reapWithin(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("still running")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDaemonExitsWhenParentKilled(t *testing.T) {
	adoptOrphans(t)
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(spawner, spawnArgs{Out: w, Wait: true}))
	w.Close()
	var pids [2]int
	if err := r.Recv(&pids); err != nil {
		t.Fatal(err)
	}
	daemon, nondaemon := pids[0], pids[1]
	t.Cleanup(func() {
		unix.Kill(nondaemon, unix.SIGKILL)
		reapWithin(nondaemon, 5*time.Second)
	})
	p.Kill()
	p.Join(context.Background())
	start := time.Now()
	if err := reapWithin(daemon, time.Second); err != nil {
		t.Fatalf("daemon child after its parent was SIGKILLed: %v", err)
	}
	t.Logf("daemon exited %v after its parent was killed", time.Since(start))
	// Non-daemon children outlive a killed parent (documented policy).
	if err := unix.Kill(nondaemon, 0); err != nil {
		t.Fatalf("non-daemon child gone with its parent: %v", err)
	}
	if err := reapWithin(nondaemon, 100*time.Millisecond); err == nil {
		t.Fatal("non-daemon child exited with its parent")
	}
}

func TestDaemonExitsWhenParentReturns(t *testing.T) {
	adoptOrphans(t)
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(spawner, spawnArgs{Out: w}))
	w.Close()
	var pids [2]int
	if err := r.Recv(&pids); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := reapWithin(pids[0], time.Second); err != nil {
		t.Fatalf("daemon child after its parent returned: %v", err)
	}
	if err := unix.Kill(pids[0], 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("daemon still there: %v", err)
	}
}

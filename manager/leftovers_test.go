//go:build linux

package manager_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/manager"
)

type leftoversArgs struct {
	TempDir string
	Report  *mp.Conn // gets the manager server's pid once all is set up
}

// makeSockets makes a Listener and a manager with their default
// addresses, with TMPDIR pointing at a directory of the test's, then
// waits to be killed.
var makeSockets = mp.RegisterProc("manager_test.makeSockets", func(a leftoversArgs) error {
	os.Setenv("TMPDIR", a.TempDir) // the manager's server inherits it too
	l, err := connection.Listen("unix", "", nil)
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := a.Report.Send(m.ServerPid()); err != nil {
		return err
	}
	<-ctx.Done() // SIGKILLed before that
	return nil
})

// TestNoLeftoversAfterSIGKILL: a process that made a Listener and a
// manager with their default addresses is SIGKILLed (so neither Close nor
// Shutdown runs), and its manager server ends with it; nothing named mp-*
// is left in its temporary directory.
func TestNoLeftoversAfterSIGKILL(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	report, childEnd, err := mp.Pipe(false)
	check(t, err)
	defer report.Close()
	p := mp.NewProcess(makeSockets, leftoversArgs{TempDir: dir, Report: childEnd})
	check(t, p.Start())
	childEnd.Close()
	defer p.Close()
	var server int
	if err := report.Recv(&server); err != nil {
		t.Fatalf("child: %v (Join: %v)", err, p.Join(ctx))
	}
	check(t, p.Kill())
	p.Join(ctx) // reports the SIGKILL

	// The server, a daemon, ends when its parent does; whatever it does
	// on its way out has been done once it is gone.
	for !gone(server) {
		if ctx.Err() != nil {
			t.Fatalf("manager server %d still running", server)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ents, err := os.ReadDir(dir)
	check(t, err)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "mp-") {
			t.Errorf("left behind: %s/%s", dir, e.Name())
		}
	}
}

// gone reports whether process pid has ended (a zombie has).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

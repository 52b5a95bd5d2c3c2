//go:build linux

package mp_test

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"golang.org/x/sys/unix"
)

// childFD is a descriptor as a child sees it.
type childFD struct {
	FD      int
	Path    string // what /proc/self/fd/N links to
	CloExec bool
}

// ownFDs lists the calling process's open descriptors.
func ownFDs() ([]childFD, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	var fds []childFD
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		path, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		fds = append(fds, childFD{FD: fd, Path: path, CloExec: flags&unix.FD_CLOEXEC != 0})
	}
	return fds, nil
}

// listFDs reports a pool worker's descriptors.
var listFDs = mp.Register("test.listFDs", func(struct{}) ([]childFD, error) { return ownFDs() })

// TestChildInheritsOnlyWhatMPPasses opens a file without O_CLOEXEC in the
// parent (as syscall.Open does by default), then starts a child and a
// pool worker that list their descriptors: the file is not among them, and
// every descriptor but 0, 1 and 2 is close-on-exec (mp's own, made after
// the start), as CPython's spawn closes what it does not pass.
func TestChildInheritsOnlyWhatMPPasses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inherit-me")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	check := func(how string, fds []childFD, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		for _, f := range fds {
			if f.Path == path {
				t.Errorf("%s: the parent's descriptor %d arrived as %d", how, fd, f.FD)
			}
			if f.FD > 2 && !f.CloExec {
				t.Errorf("%s: descriptor %d (%s) is not close-on-exec", how, f.FD, f.Path)
			}
		}
	}
	out, in := pipe(t, false)
	p := start(t, mp.NewProcess(relayFDs, in))
	in.Close()
	var fds []childFD
	err = out.Recv(&fds)
	check("Process", fds, err)
	if err := p.Join(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	pool := newPool(t, mp.PoolOptions{Processes: 1})
	fds, err = listFDs.Apply(ctxTimeout(t, 10*time.Second), pool, struct{}{})
	check("Pool", fds, err)
}

// relayFDs sends the child's descriptors to the parent.
var relayFDs = mp.RegisterProc("test.relayFDs", func(out *mp.Conn) error {
	defer out.Close()
	fds, err := ownFDs()
	if err != nil {
		return err
	}
	return out.Send(fds)
})

//go:build linux

package shm

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSegmentShared(t *testing.T) {
	s, err := New("t", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bytes()) != os.Getpagesize() {
		t.Fatalf("size %d", len(s.Bytes()))
	}
	dup, err := unix.Dup(s.FD())
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(dup)
	if err != nil {
		t.Fatal(err)
	}
	s.Uint64(8).Store(42)
	if o.Uint64(8).Load() != 42 {
		t.Fatal("second mapping does not see the first's write")
	}
	s.Ref()
	s.Close()
	if s.FD() < 0 {
		t.Fatal("closed with a reference left")
	}
	s.Close()
	o.Close()
	if s.FD() != -1 || s.Ref() != ErrClosed {
		t.Fatal("not closed")
	}
	if _, err := New("t", 0); err == nil {
		t.Fatal("size 0 accepted")
	}
}

func TestAlive(t *testing.T) {
	if !Alive(Self()) {
		t.Fatal("self not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if Alive(uint64(cmd.Process.Pid)) {
		t.Fatal("exited process alive")
	}
	// Same pid, other start time: a reused pid.
	if Alive(Self() ^ 1<<40) {
		t.Fatal("start time ignored")
	}
	if Alive(0) {
		t.Fatal("pid 0 alive")
	}
}

// A segment's size cannot change, and Open refuses memory whose size
// could: shrinking it would kill the other processes with SIGBUS.
func TestSizeSealed(t *testing.T) {
	s, err := New("sealed", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := unix.Ftruncate(s.FD(), 0); err == nil {
		t.Fatal("a segment was shrunk")
	}
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, 4096); err != nil {
		t.Fatal(err)
	}
	if seg, err := Open(fd); err == nil {
		seg.Close()
		t.Fatal("Open took memory whose size is not sealed")
	}
}

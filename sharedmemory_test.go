//go:build linux

package mp_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/leakcheck"
)

type shmArgs struct {
	Name string
	Mem  *mp.SharedMemory // passed as a handle, when set
	Op   string
	Size int
	Out  *mp.Conn
	// Posix names the block with mp.WithPOSIXName.
	Posix bool
}

// shmReport is what a child says about its work.
type shmReport struct {
	Err    string
	Name   string
	Traces []string // memfd descriptors or mappings of the block left in the child
}

var shmOp = mp.RegisterProc("test.shmOp", func(a shmArgs) error {
	defer a.Out.Close()
	rep := shmReport{}
	if err := shmOpBody(&a, &rep); err != nil {
		rep.Err = err.Error()
	}
	return a.Out.Send(rep)
})

func shmOpBody(a *shmArgs, rep *shmReport) error {
	switch a.Op {
	case "attachWrite", "handleWrite", "attachUnlink":
		m := a.Mem
		if m == nil {
			var err error
			if m, err = mp.AttachSharedMemory(a.Name, a.opts()...); err != nil {
				return err
			}
		}
		rep.Name = m.Name()
		copy(m.Bytes(), "written by "+a.Op)
		if a.Op == "attachUnlink" {
			if err := m.Unlink(); err != nil {
				return err
			}
		}
		if err := m.Close(); err != nil {
			return err
		}
		rep.Traces = shmTraces(m.Name())
		return nil
	case "createHold":
		// Create a block, report, and wait to be killed.
		m, err := mp.NewSharedMemory(a.Name, a.Size, a.opts()...)
		if err != nil {
			return err
		}
		copy(m.Bytes(), "from the creator")
		if err := a.Out.Send(shmReport{Name: m.Name()}); err != nil {
			return err
		}
		time.Sleep(time.Minute)
		return nil
	}
	return fmt.Errorf("unknown op %q", a.Op)
}

func (a *shmArgs) opts() []mp.SharedMemoryOption {
	if a.Posix {
		return []mp.SharedMemoryOption{mp.WithPOSIXName()}
	}
	return nil
}

// shmTraces lists the descriptors and mappings of this process that belong
// to the block named name (a memfd, or a file in /dev/shm).
func shmTraces(name string) []string {
	ours := func(s string) bool {
		return strings.HasSuffix(s, "/memfd:mp-shm-"+name+" (deleted)") ||
			strings.HasSuffix(s, "/dev/shm/"+name) || strings.HasSuffix(s, "/dev/shm/"+name+" (deleted)")
	}
	var out []string
	for _, f := range leakcheck.FDNames() {
		if ours(f) {
			out = append(out, "fd "+f)
		}
	}
	maps, _ := os.ReadFile("/proc/self/maps")
	for _, l := range strings.Split(string(maps), "\n") {
		if ours(l) {
			out = append(out, "map "+l)
		}
	}
	return out
}

// shmServing counts the goroutines serving names in this process.
func shmServing() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("mp.(*shmServer)."))
}

// waitNoServers waits until no goroutine serves a name.
func waitNoServers(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); shmServing() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d shared memory goroutines left", shmServing())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newShm(t *testing.T, name string, size int) *mp.SharedMemory {
	t.Helper()
	m, err := mp.NewSharedMemory(name, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); m.Unlink() })
	return m
}

func runShmOp(t *testing.T, a shmArgs) shmReport {
	t.Helper()
	r, w := pipe(t, false)
	a.Out = w
	p := start(t, mp.NewProcess(shmOp, a))
	w.Close()
	var rep shmReport
	if err := r.Recv(&rep); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if rep.Err != "" {
		t.Fatalf("child %s: %s", a.Op, rep.Err)
	}
	if len(rep.Traces) > 0 {
		t.Errorf("child %s left %v", a.Op, rep.Traces)
	}
	return rep
}

func TestSharedMemoryLocal(t *testing.T) {
	m := newShm(t, "", 100)
	if !strings.HasPrefix(m.Name(), "psm_") || m.Size() != 100 || len(m.Bytes()) != 100 {
		t.Fatalf("new block %v, %d bytes", m, len(m.Bytes()))
	}
	if m.String() != fmt.Sprintf("SharedMemory(%q, size=100)", m.Name()) {
		t.Errorf("String = %s", m)
	}
	if !bytes.Equal(m.Bytes(), make([]byte, 100)) {
		t.Fatal("new block not zeroed")
	}
	other := newShm(t, "", 1)
	if other.Name() == m.Name() {
		t.Fatal("generated names repeat")
	}

	b, err := mp.AttachSharedMemory(m.Name())
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != m.Name() || b.Size() != 100 {
		t.Fatalf("attached %v", b)
	}
	copy(m.Bytes(), "hello")
	if string(b.Bytes()[:5]) != "hello" {
		t.Fatal("attached block does not share memory")
	}
	if _, err := mp.NewSharedMemory(m.Name(), 10); !errors.Is(err, os.ErrExist) {
		t.Fatalf("creating a name in use = %v", err)
	}
	// The creator may close before unlinking; attaching still works.
	m.Close()
	if m.Bytes() != nil {
		t.Fatal("Bytes after Close")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	c, err := mp.AttachSharedMemory(m.Name())
	if err != nil {
		t.Fatalf("attach after the creator's Close: %v", err)
	}
	if string(c.Bytes()[:5]) != "hello" {
		t.Fatal("memory lost with the creator's Close")
	}
	c.Close()
	// Unlink from an attached copy; the name is gone, the memory stays.
	if err := b.Unlink(); err != nil {
		t.Fatal(err)
	}
	// Left: other's server. The goroutine that answered c's attach may
	// still be returning from its reply (CI saw 2 here once).
	waitFor(t, func() bool { return shmServing() == 1 })
	if _, err := mp.AttachSharedMemory(m.Name()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("attach after Unlink = %v", err)
	}
	if err := m.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("second Unlink = %v", err)
	}
	if string(b.Bytes()[:5]) != "hello" {
		t.Fatal("memory lost with Unlink")
	}
	// The name can be created anew: Unlink of the old block leaves it.
	again := newShm(t, m.Name(), 10)
	if err := b.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Unlink of an old block whose name was reused = %v", err)
	}
	if d, err := mp.AttachSharedMemory(again.Name()); err != nil {
		t.Fatalf("the reused name was unlinked by the old block: %v", err)
	} else if d.Size() != 10 {
		t.Fatalf("attached the old block: %v", d)
	} else {
		d.Close()
	}
	b.Close()
	again.Close()
	if err := again.Unlink(); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if err := other.Unlink(); err != nil {
		t.Fatal(err)
	}
	// Unlink returns once the serving goroutine has closed its done
	// channel; it may still be on its way out.
	waitNoServers(t)
	for _, name := range []string{m.Name(), other.Name()} {
		if tr := shmTraces(name); len(tr) > 0 {
			t.Fatalf("left after Close and Unlink: %v", tr)
		}
	}

	// Bad arguments.
	for _, size := range []int{0, -1} {
		if _, err := mp.NewSharedMemory("", size); !errors.Is(err, mp.ErrInvalidSize) {
			t.Errorf("size %d: %v", size, err)
		}
	}
	for _, name := range []string{"a\x00b", strings.Repeat("x", 100)} {
		if _, err := mp.NewSharedMemory(name, 1); err == nil {
			t.Errorf("NewSharedMemory(%q) accepted", name)
		}
		if _, err := mp.AttachSharedMemory(name); err == nil {
			t.Errorf("AttachSharedMemory(%q) accepted", name)
		}
	}
	if _, err := mp.AttachSharedMemory(""); err == nil {
		t.Error("AttachSharedMemory(\"\") accepted")
	}
	long := newShm(t, strings.Repeat("y", 99), 1)
	long.Close()
	if err := long.Unlink(); err != nil {
		t.Fatal(err)
	}
	if _, err := mp.AttachSharedMemory("never-created"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("attach of a name never created = %v", err)
	}
}

func TestSharedMemoryAcrossProcesses(t *testing.T) {
	name := fmt.Sprintf("test-%d-across", os.Getpid())
	m := newShm(t, name, 1<<20+3)
	// A child attaches by name, another gets the block as an argument.
	rep := runShmOp(t, shmArgs{Name: name, Op: "attachWrite"})
	if rep.Name != name || !bytes.HasPrefix(m.Bytes(), []byte("written by attachWrite")) {
		t.Fatalf("child attached to %q; block starts %q", rep.Name, m.Bytes()[:30])
	}
	runShmOp(t, shmArgs{Mem: m, Op: "handleWrite"})
	if !bytes.HasPrefix(m.Bytes(), []byte("written by handleWrite")) {
		t.Fatalf("block starts %q", m.Bytes()[:30])
	}
	// A child unlinks; the creator stops serving.
	runShmOp(t, shmArgs{Name: name, Op: "attachUnlink"})
	if _, err := mp.AttachSharedMemory(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("attach after a child unlinked = %v", err)
	}
	waitNoServers(t)
	if err := m.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Unlink after a child unlinked = %v", err)
	}
	if !bytes.HasPrefix(m.Bytes(), []byte("written by attachUnlink")) || m.Size() != 1<<20+3 {
		t.Fatal("block lost")
	}
	// A SharedMemory can still be passed on after its name is gone.
	runShmOp(t, shmArgs{Mem: m, Op: "handleWrite"})
	m.Close()
	if tr := shmTraces(name); len(tr) > 0 {
		t.Fatalf("left after Close: %v", tr)
	}
	c1, _ := pipe(t, true)
	if err := c1.Send(m); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("Send of a closed SharedMemory = %v", err)
	}
}

func TestSharedMemoryCreatorKilled(t *testing.T) {
	name := fmt.Sprintf("test-%d-killed", os.Getpid())
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(shmOp, shmArgs{Name: name, Op: "createHold", Size: 4096, Out: w}))
	w.Close()
	var rep shmReport
	if err := r.Recv(&rep); err != nil || rep.Err != "" {
		t.Fatalf("creator: %v %s", err, rep.Err)
	}
	m, err := mp.AttachSharedMemory(name)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if string(m.Bytes()[:16]) != "from the creator" {
		t.Fatalf("block starts %q", m.Bytes()[:16])
	}
	if _, err := mp.NewSharedMemory(name, 1); !errors.Is(err, os.ErrExist) {
		t.Fatalf("creating a name another process serves = %v", err)
	}
	p.Kill()
	var ee *mp.ExitError
	if err := p.Join(ctxTimeout(t, 30*time.Second)); !errors.As(err, &ee) || ee.Signal() != syscall.SIGKILL {
		t.Fatalf("Join = %v", err)
	}
	if _, err := mp.AttachSharedMemory(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("attach after the creator died = %v", err)
	}
	if err := m.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Unlink after the creator died = %v", err)
	}
	// Attached users keep working.
	copy(m.Bytes()[4091:], "still")
	if string(m.Bytes()[4091:]) != "still" || string(m.Bytes()[:4]) != "from" {
		t.Fatal("attached block broken after the creator died")
	}
	// The name is free again.
	again := newShm(t, name, 1)
	again.Close()
	again.Unlink()
	m.Close()
	if tr := shmTraces(name); len(tr) > 0 {
		t.Fatalf("left after Close: %v", tr)
	}
}

// Only processes of the creator's user may attach, and attachers only
// trust blocks served by their own user. Needs root and python3.
func TestSharedMemoryOtherUser(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and /usr/bin/python3")
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}

	// Another user asks for our block: refused.
	m := newShm(t, "", 16)
	cmd := exec.Command(py, "-c", `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect("\0mp-shm-" + sys.argv[1])
s.sendall(b"a" + bytes(8))
msg, anc, flags, addr = s.recvmsg(1, socket.CMSG_SPACE(4))
print(msg.decode(), len(anc))
`, m.Name())
	cmd.SysProcAttr = nobody
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "p 0" {
		t.Fatalf("another user's request: %v %q, want \"p 0\" (refused, no descriptor)", err, out)
	}

	// Another user serves a name: we do not attach to it.
	name := fmt.Sprintf("test-%d-squat", os.Getpid())
	cmd = exec.Command(py, "-c", `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0mp-shm-" + sys.argv[1])
s.listen(8)
print("ready", flush=True)
sys.stdin.read()
`, name)
	cmd.SysProcAttr = nobody
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	if ready, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || ready != "ready\n" {
		t.Fatalf("squatter: %v %q", err, ready)
	}
	if _, err := mp.AttachSharedMemory(name); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("attach to another user's name = %v", err)
	}
	if _, err := mp.NewSharedMemory(name, 1); !errors.Is(err, os.ErrExist) {
		t.Fatalf("create of another user's name = %v", err)
	}
}

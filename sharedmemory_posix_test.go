//go:build linux

package mp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/pytest"
)

var posix = mp.WithPOSIXName()

func newPosixShm(t *testing.T, name string, size int) *mp.SharedMemory {
	t.Helper()
	m, err := mp.NewSharedMemory(name, size, posix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); m.Unlink() })
	return m
}

func shmFile(name string) (os.FileInfo, error) { return os.Lstat("/dev/shm/" + name) }

// TestSharedMemoryPOSIX: with WithPOSIXName a block is the file
// /dev/shm/NAME, mode 0600, named as CPython names it (a leading "/" is
// dropped), that lives until unlinked, and Unlink removes that file and
// no other.
func TestSharedMemoryPOSIX(t *testing.T) {
	name := fmt.Sprintf("mp-test-%d-posix", os.Getpid())
	m := newPosixShm(t, "/"+name, 1000)
	if m.Name() != name || m.Size() != 1000 {
		t.Fatalf("created %v", m)
	}
	fi, err := shmFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 || fi.Size() != 1000 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("/dev/shm/%s: mode %v, %d bytes, uid %d", name, fi.Mode(), fi.Size(), fi.Sys().(*syscall.Stat_t).Uid)
	}
	copy(m.Bytes(), "hello")
	for _, n := range []string{name, "/" + name, "//" + name} {
		b, err := mp.AttachSharedMemory(n, posix)
		if err != nil {
			t.Fatalf("attach %q: %v", n, err)
		}
		if b.Name() != name || string(b.Bytes()[:5]) != "hello" {
			t.Fatalf("attach %q: %v holds %q", n, b, b.Bytes()[:5])
		}
		b.Close()
	}
	if _, err := mp.NewSharedMemory(name, 1, posix); !errors.Is(err, os.ErrExist) {
		t.Fatalf("creating a name in use = %v", err)
	}
	if _, err := mp.AttachSharedMemory(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a POSIX name seen by a served-name attach: %v", err)
	}
	gen := newPosixShm(t, "", 10)
	if !strings.HasPrefix(gen.Name(), "psm_") {
		t.Fatalf("generated name %q", gen.Name())
	}
	if _, err := shmFile(gen.Name()); err != nil {
		t.Fatal(err)
	}

	// The creator closes; the name lives on, until one unlinks it.
	b, err := mp.AttachSharedMemory(name, posix)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := b.Unlink(); err != nil {
		t.Fatal(err)
	}
	if _, err := shmFile(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after Unlink: %v", err)
	}
	if string(b.Bytes()[:5]) != "hello" {
		t.Fatal("memory lost with Unlink")
	}
	if _, err := mp.AttachSharedMemory(name, posix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("attach after Unlink = %v", err)
	}
	if err := m.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("second Unlink = %v", err)
	}
	// The name made anew: the old block's Unlink leaves the new file.
	again := newPosixShm(t, name, 10)
	if err := b.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Unlink of an old block whose name was reused = %v", err)
	}
	if _, err := shmFile(name); err != nil {
		t.Fatalf("the old block's Unlink removed the new file: %v", err)
	}
	b.Close()
	again.Close()
	if err := again.Unlink(); err != nil {
		t.Fatal(err)
	}
	if tr := shmTraces(name); len(tr) > 0 {
		t.Fatalf("left after Close: %v", tr)
	}

	// Bad names, and files that are not blocks of this user.
	for _, n := range []string{"", "/", "a/b", ".", "..", "a\x00b", strings.Repeat("x", 256)} {
		if n != "" { // "" asks for a generated name
			if _, err := mp.NewSharedMemory(n, 1, posix); err == nil {
				t.Errorf("NewSharedMemory(%q) accepted", n)
			}
		}
		if _, err := mp.AttachSharedMemory(n, posix); err == nil {
			t.Errorf("AttachSharedMemory(%q) accepted", n)
		}
	}
	link := name + "-link"
	if err := os.Symlink("/etc/hostname", "/dev/shm/"+link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove("/dev/shm/" + link)
	if _, err := mp.AttachSharedMemory(link, posix); err == nil {
		t.Error("attached through a symbolic link")
	}
	if _, err := mp.NewSharedMemory(link, 1, posix); !errors.Is(err, os.ErrExist) {
		t.Errorf("created over a symbolic link: %v", err)
	}
	if os.Geteuid() == 0 {
		foreign := newPosixShm(t, name+"-foreign", 1)
		if err := os.Chown("/dev/shm/"+foreign.Name(), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := mp.AttachSharedMemory(foreign.Name(), posix); !errors.Is(err, os.ErrPermission) {
			t.Errorf("attached to another user's block: %v", err)
		}
	}
}

// TestSharedMemoryPOSIXAcrossProcesses: a child attaches by name, another
// gets the block as its argument (it arrives with its POSIX name), and a
// third unlinks it, which removes the file.
func TestSharedMemoryPOSIXAcrossProcesses(t *testing.T) {
	name := fmt.Sprintf("mp-test-%d-posix-across", os.Getpid())
	m := newPosixShm(t, name, 1<<20+3)
	rep := runShmOp(t, shmArgs{Name: "/" + name, Op: "attachWrite", Posix: true})
	if rep.Name != name || string(m.Bytes()[:22]) != "written by attachWrite" {
		t.Fatalf("child attached to %q; block starts %q", rep.Name, m.Bytes()[:22])
	}
	runShmOp(t, shmArgs{Mem: m, Op: "handleWrite"})
	if string(m.Bytes()[:22]) != "written by handleWrite" {
		t.Fatalf("block starts %q", m.Bytes()[:22])
	}
	runShmOp(t, shmArgs{Mem: m, Op: "attachUnlink"})
	if _, err := shmFile(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after a child's Unlink: %v", err)
	}
}

// TestSharedMemoryPOSIXCreatorKilled: as documented, a POSIX block
// outlives its creator's SIGKILL (nothing unlinks it), holds what was
// written, and an attacher can unlink it.
func TestSharedMemoryPOSIXCreatorKilled(t *testing.T) {
	name := fmt.Sprintf("mp-test-%d-posix-killed", os.Getpid())
	r, w := pipe(t, false)
	p := start(t, mp.NewProcess(shmOp, shmArgs{Name: name, Op: "createHold", Size: 4096, Out: w, Posix: true}))
	w.Close()
	var rep shmReport
	if err := r.Recv(&rep); err != nil || rep.Err != "" {
		t.Fatalf("creator: %v %s", err, rep.Err)
	}
	p.Kill()
	var ee *mp.ExitError
	if err := p.Join(ctxTimeout(t, 30*time.Second)); !errors.As(err, &ee) || ee.Signal() != syscall.SIGKILL {
		t.Fatalf("Join = %v", err)
	}
	m, err := mp.AttachSharedMemory(name, posix)
	if err != nil {
		t.Fatalf("attach after the creator's SIGKILL: %v", err)
	}
	if string(m.Bytes()[:16]) != "from the creator" {
		t.Fatalf("block starts %q", m.Bytes()[:16])
	}
	if err := m.Unlink(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := shmFile(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after Unlink: %v", err)
	}
}

// pyShm attaches to a block without registering it with the resource
// tracker (which would unlink it when this process exits), or creates
// one, for the tests below.
const pyShm = `
import sys
from multiprocessing import shared_memory, resource_tracker
def attach(name):
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")
    return shm
`

// TestSharedMemoryPOSIXPython: CPython attaches to a block Go made (and
// leaves it in place), and Go attaches to one CPython made, which the
// Python creator then unlinks.
func TestSharedMemoryPOSIXPython(t *testing.T) {
	pytest.Each(t, func(t *testing.T, py pytest.Interp) {
		m := newPosixShm(t, "", 64)
		copy(m.Bytes(), "hello")
		out := pytest.Run(t, py, nil, pyShm+`
shm = attach(sys.argv[1])
print(shm.name, shm.size >= 64, bytes(shm.buf[:5]).decode())
shm.buf[5:10] = b"world"
shm.close()
`, m.Name())
		if got, want := strings.TrimSpace(string(out)), m.Name()+" True hello"; got != want {
			t.Fatalf("python: %q, want %q", got, want)
		}
		if string(m.Bytes()[:10]) != "helloworld" {
			t.Fatalf("block holds %q", m.Bytes()[:10])
		}
		if _, err := shmFile(m.Name()); err != nil {
			t.Fatalf("python's exit removed the block: %v", err)
		}

		p := startPyPeer(t, py, pyShm+`
shm = shared_memory.SharedMemory(create=True, size=4096)
shm.buf[:11] = b"from python"
print(shm.name, flush=True)
sys.stdin.readline()
print(bytes(shm.buf[11:13]).decode(), flush=True)
shm.close()
shm.unlink()
`)
		name := p.line(t)
		b, err := mp.AttachSharedMemory(name, posix)
		if err != nil {
			t.Fatal(err)
		}
		if string(b.Bytes()[:11]) != "from python" || b.Size() < 4096 {
			t.Fatalf("attached %v holding %q", b, b.Bytes()[:11])
		}
		copy(b.Bytes()[11:], "go")
		b.Close()
		p.say(t, "go on")
		if got := p.line(t); got != "go" {
			t.Fatalf("python read %q", got)
		}
		p.wait(t)
		if _, err := shmFile(name); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("file after Python's unlink: %v", err)
		}
	})
}

const numpyFloats = 1_000_000

// TestSharedMemoryPOSIXNumpy: Go fills a million float64s, Python sums
// them through np.ndarray(buffer=shm.buf); Python fills a block it made,
// Go sums it. The sums are exact (multiples of 1/4 below 2^53).
func TestSharedMemoryPOSIXNumpy(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Fatalf("this test needs numpy for %s (Debian's python3-numpy; .ci/run installs it): %v %s", python, err, out)
	}
	py := pytest.Interp{Path: python, Version: "debian"}

	m := newPosixShm(t, "", 8*numpyFloats)
	fs := unsafe.Slice((*float64)(unsafe.Pointer(&m.Bytes()[0])), numpyFloats)
	for i := range fs {
		fs[i] = float64(i) + 0.25
	}
	out := pytest.Run(t, py, nil, pyShm+`
import numpy as np
shm = attach(sys.argv[1])
a = np.ndarray((int(sys.argv[2]),), dtype=np.float64, buffer=shm.buf)
print(repr(float(a.sum())))
del a
shm.close()
`, m.Name(), strconv.Itoa(numpyFloats))
	want := float64(numpyFloats)*(numpyFloats-1)/2 + 0.25*numpyFloats
	if got, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err != nil || got != want {
		t.Fatalf("python's sum of Go's floats: %q, want %v", out, want)
	}

	p := startPyPeer(t, py, pyShm+`
import numpy as np
n = int(sys.argv[1])
shm = shared_memory.SharedMemory(create=True, size=8 * n)
a = np.ndarray((n,), dtype=np.float64, buffer=shm.buf)
a[:] = np.arange(n, dtype=np.float64) * 2 + 0.5
print(shm.name, flush=True)
sys.stdin.readline()
del a
shm.close()
shm.unlink()
`, strconv.Itoa(numpyFloats))
	b, err := mp.AttachSharedMemory(p.line(t), posix)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range unsafe.Slice((*float64)(unsafe.Pointer(&b.Bytes()[0])), numpyFloats) {
		sum += f
	}
	b.Close()
	p.say(t, "done")
	p.wait(t)
	if want := float64(numpyFloats)*(numpyFloats-1) + 0.5*numpyFloats; sum != want {
		t.Fatalf("Go's sum of Python's floats: %v, want %v", sum, want)
	}
}

// pyPeer is a Python process the test talks to line by line.
type pyPeer struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr strings.Builder
	cancel context.CancelFunc
}

func startPyPeer(t *testing.T, py pytest.Interp, script string, args ...string) *pyPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p := &pyPeer{cmd: exec.CommandContext(ctx, py.Path, append([]string{"-c", script}, args...)...), cancel: cancel}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	t.Cleanup(func() {
		p.in.Close()
		p.cmd.Process.Kill()
		p.cmd.Wait()
		cancel()
	})
	return p
}

func (p *pyPeer) line(t *testing.T) string {
	t.Helper()
	if !p.out.Scan() {
		p.in.Close()
		err := p.cmd.Wait()
		t.Fatalf("python ended (%v): %s", err, p.stderr.String())
	}
	return p.out.Text()
}

func (p *pyPeer) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// wait waits for a clean exit with nothing on stderr (the resource
// tracker warns there of blocks it had to unlink).
func (p *pyPeer) wait(t *testing.T) {
	t.Helper()
	p.in.Close()
	for p.out.Scan() {
	}
	if err := p.cmd.Wait(); err != nil || p.stderr.Len() > 0 {
		t.Fatalf("python: %v %s", err, p.stderr.String())
	}
}

// A block with a POSIX name is the file /dev/shm/NAME, which a Python
// process opens with SharedMemory(name="mp-example-frames"); Go attaches
// to Python's blocks the same way.
func ExampleWithPOSIXName() {
	m, err := mp.NewSharedMemory("mp-example-frames", 4096, mp.WithPOSIXName())
	if err != nil {
		log.Fatal(err)
	}
	defer m.Unlink() // the creator unlinks, as in Python
	defer m.Close()
	copy(m.Bytes(), "hello")

	// What a Python process (or another Go one) does:
	b, err := mp.AttachSharedMemory("mp-example-frames", mp.WithPOSIXName())
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	fmt.Println(b.Name(), string(b.Bytes()[:5]))
	_, err = os.Stat("/dev/shm/mp-example-frames")
	fmt.Println(err == nil)
	// Output:
	// mp-example-frames hello
	// true
}

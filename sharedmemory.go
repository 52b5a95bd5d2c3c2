//go:build linux

package mp

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/codec"
)

// SharedMemory is a block of memory that processes find by name, like
// Python's multiprocessing.shared_memory.SharedMemory: one process
// creates it with [NewSharedMemory], others (related or not) attach to it
// with [AttachSharedMemory], and all of them read and write the same
// bytes through Bytes. A SharedMemory may also be passed to a child
// process as (part of) its argument, or sent over a Conn; it then arrives
// attached.
//
// # Lifetime
//
// Unlike Python's, whose block is a file in /dev/shm that outlives every
// process when nobody unlinks it, nothing is left behind here:
//
//   - The name lives until Unlink is called (in any process that has the
//     block) or the creating process exits, however it exits (SIGKILL
//     included). After that, AttachSharedMemory of the name fails with an
//     error that matches os.ErrNotExist, and the name may be created anew.
//   - The memory lives as long as a process has it: until every process
//     that created, attached or received it has called Close or died (and,
//     while the name lives, in the creating process, which serves it).
//     Close in one process does not affect the others.
//
// The name is served by the creating process: a Linux abstract-namespace
// unix socket, "@mp-shm-" + name, answered by a goroutine that hands the
// memory (a memfd) to attachers whose user id is the creator's (or root),
// and that Unlink stops. Abstract socket names are per network namespace:
// processes in another namespace (another container) do not see the name.
// The block's size is sealed: no process can shrink or grow it.
//
// # POSIX names, shared with Python
//
// With [WithPOSIXName], the block is instead a file in /dev/shm, named as
// CPython's multiprocessing.shared_memory.SharedMemory(name=...) names
// it, so that Python processes attach to a block Go created and Go
// attaches to one Python created:
//
//	m, _ := mp.NewSharedMemory("frames", 8<<20, mp.WithPOSIXName()) // /dev/shm/frames
//	shm = SharedMemory(name="frames")                               # in Python
//
// Such a block follows Python's rules, not the ones above:
//
//   - Names: a leading "/" is optional and dropped, as Python's name
//     property drops the one it adds ("/frames" and "frames" are the same
//     block, /dev/shm/frames); the rest is 1 to 255 bytes without "/" or
//     NUL, and not "." or "..". Without a name, NewSharedMemory picks one
//     starting with "psm_", as Python does. The file is created with mode
//     0600, so only the same user (or root) opens it, and a file owned by
//     another user is refused (os.ErrPermission) as above.
//   - The name lives until some process unlinks it — Go's Unlink, Python's
//     unlink(), or removing the file — even after every process has
//     exited. The creator is the one that should call Unlink, as in
//     Python. The memory lives while the name does or a process maps it.
//   - After a SIGKILL (or any exit without Unlink) of a Go creator, the
//     file stays in /dev/shm, holding its memory, until someone unlinks it:
//     any process that knows the name can (AttachSharedMemory then Unlink,
//     or Python's SharedMemory(name=...).unlink()). mp keeps no resource
//     tracker process. A Python creator's resource tracker unlinks the
//     blocks that process created when it ends, SIGKILL included.
//   - A Python process that attaches registers the block with its own
//     resource tracker too, which unlinks it when that process exits and
//     warns of a "leaked" object (CPython 3.11 and 3.12; 3.13 unless
//     track=False is passed). So that a Python attacher leaves a Go
//     creator's block alone, call
//     resource_tracker.unregister(shm._name, "shared_memory") after
//     attaching, or pass track=False on 3.13.
//   - The size is not sealed (a file in /dev/shm cannot be): a process
//     of the same user that truncates the file makes accesses beyond its
//     new end fault (SIGBUS) in every process that maps it, as in Python.
//
// Such a block also travels to a child process or over a Conn, and
// arrives attached (its Unlink then removes the file).
//
// Bytes is the mapping itself; it is valid until Close, and must not be
// used after it. A SharedMemory that is never closed keeps its mapping
// until the process exits (its descriptor is closed once it is garbage).
// Close and Unlink may be called from any goroutine, but not while other
// goroutines use Bytes.
type SharedMemory struct {
	mu   sync.Mutex
	name string
	size int
	ino  uint64 // identifies the memory, to unlink this block and no other
	fd   int    // -1 once closed
	mem  []byte // nil once closed
	stop runtime.Cleanup

	posix bool   // a file in /dev/shm (WithPOSIXName)
	dev   uint64 // with ino, identifies that file, to unlink it and no other
}

// A SharedMemoryOption changes how NewSharedMemory and AttachSharedMemory
// name a block.
type SharedMemoryOption func(*shmConfig)

type shmConfig struct {
	posix bool
}

// WithPOSIXName makes the block a file in /dev/shm under its name, as
// CPython's multiprocessing.shared_memory.SharedMemory names blocks, so
// that Python processes attach to it and Go to one Python created; see
// "POSIX names, shared with Python" in [SharedMemory] for the names and
// who unlinks. Pass it to AttachSharedMemory too, to attach to such a
// block.
func WithPOSIXName() SharedMemoryOption {
	return func(c *shmConfig) { c.posix = true }
}

func shmOptions(opts []SharedMemoryOption) shmConfig {
	var c shmConfig
	for _, o := range opts {
		o(&c)
	}
	return c
}

const (
	shmPrefix      = "mp-shm-"
	maxShmName     = 106 - len(shmPrefix) // sun_path (108) less the leading and trailing NUL
	shmTimeout     = 10 * time.Second     // for a request to the creator
	shmRandomBytes = 8
)

// Requests to the creator are 9 bytes: an operation, then the memory's
// inode number for opUnlink. Replies are one status byte; opAttach's
// carries the memfd.
const (
	opAttach = 'a'
	opUnlink = 'u'

	statusOK     = 'k'
	statusGone   = 'g' // the name now names another block
	statusDenied = 'p' // the requester's uid may not use the block
)

// NewSharedMemory creates a block of size bytes (zeroed) named name, or a
// generated name (like Python's "psm_..." names) when name is empty. It
// fails with an error that matches os.ErrExist if the name is in use, and
// with ErrInvalidSize if size is not positive. The name is at most 99
// bytes long and holds no NUL byte (for WithPOSIXName, see
// [SharedMemory]).
func NewSharedMemory(name string, size int, opts ...SharedMemoryOption) (*SharedMemory, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: shared memory of %d bytes", ErrInvalidSize, size)
	}
	if shmOptions(opts).posix {
		return newPosixShm(name, size)
	}
	generate := name == ""
	if !generate {
		if err := checkShmName(name); err != nil {
			return nil, err
		}
	}
	var lfd int
	for tries := 0; ; tries++ {
		if generate {
			var err error
			if name, err = randomShmName(); err != nil {
				return nil, err
			}
		}
		var err error
		lfd, err = listenShm(name)
		if err == nil {
			break
		}
		if err == unix.EADDRINUSE {
			if generate && tries < 10 {
				continue
			}
			return nil, fmt.Errorf("mp: shared memory %q: %w", name, os.ErrExist)
		}
		return nil, err
	}
	fd, err := newShmFD(name, size)
	if err != nil {
		unix.Close(lfd)
		return nil, err
	}
	m, err := mapShm(name, fd)
	if err != nil {
		unix.Close(lfd)
		return nil, err
	}
	sfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(lfd)
		m.Close()
		return nil, os.NewSyscallError("dup", err)
	}
	if err := serveShm(name, m.ino, sfd, lfd); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// AttachSharedMemory attaches to the block named name. It fails with an
// error that matches os.ErrNotExist when no process serves the name (it
// was never created, was unlinked, or its creator exited), and with one
// that matches os.ErrPermission when the creator runs as another user.
// With WithPOSIXName, it attaches to the file /dev/shm/name instead (made
// by NewSharedMemory with that option, or by Python), which exists until
// it is unlinked.
func AttachSharedMemory(name string, opts ...SharedMemoryOption) (*SharedMemory, error) {
	if shmOptions(opts).posix {
		return attachPosixShm(name)
	}
	if err := checkShmName(name); err != nil {
		return nil, err
	}
	status, fd, err := shmRequest(name, opAttach, 0)
	if err != nil {
		return nil, err
	}
	if status != statusOK || fd < 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, shmStatusError(name, status)
	}
	return mapShm(name, fd)
}

// Name returns the block's name.
func (m *SharedMemory) Name() string { return m.name }

// Size returns the block's size in bytes.
func (m *SharedMemory) Size() int { return m.size }

// Bytes returns the block's memory, shared with every process that has
// it, or nil after Close.
func (m *SharedMemory) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mem
}

// String returns the block's name and size, as Python prints it.
func (m *SharedMemory) String() string {
	return fmt.Sprintf("SharedMemory(%q, size=%d)", m.name, m.size)
}

// Close unmaps the block in this process; other processes keep it. The
// name stays: Close does not unlink. Closing again does nothing.
func (m *SharedMemory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mem == nil {
		return nil
	}
	m.stop.Stop()
	err := unix.Munmap(m.mem)
	unix.Close(m.fd)
	m.mem, m.fd = nil, -1
	if err != nil {
		return os.NewSyscallError("munmap", err)
	}
	return nil
}

// Unlink destroys the name: nobody can attach to the block any more, and
// the name may be created anew. Processes that have the block keep it
// until they Close it or exit. Unlink may be called in any process that
// has the block, also after Close; it fails with an error that matches
// os.ErrNotExist when the name is already gone (or names another block).
// For a block with a POSIX name, it removes the file, as Python's unlink
// does.
func (m *SharedMemory) Unlink() error {
	if m.posix {
		return unlinkPosixShm(m.name, m.dev, m.ino)
	}
	shmServers.Lock()
	srv := shmServers.byName[m.name]
	shmServers.Unlock()
	if srv != nil && srv.ino == m.ino {
		srv.stop()
		return nil
	}
	status, fd, err := shmRequest(m.name, opUnlink, m.ino)
	if fd >= 0 {
		unix.Close(fd)
	}
	if err != nil {
		return err
	}
	if status != statusOK {
		return shmStatusError(m.name, status)
	}
	return nil
}

// shmWire is a SharedMemory on the wire: its name and its memory's handle.
type shmWire struct {
	_     struct{} `cbor:",toarray"`
	Name  string
	Mem   cbor.RawMessage
	Posix bool
}

// MarshalCBOR lets a SharedMemory travel to another process inside a
// message; it arrives attached (even if the name is gone by then).
func (m *SharedMemory) MarshalCBOR() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mem == nil {
		return nil, ErrClosed
	}
	h, err := codec.EncodeHandle(codec.HandleShared, m.fd, kindSharedMemory)
	if err != nil {
		return nil, err
	}
	return codec.Marshal(shmWire{Name: m.name, Mem: h, Posix: m.posix})
}

// UnmarshalCBOR receives a SharedMemory sent by mp.
func (m *SharedMemory) UnmarshalCBOR(data []byte) error {
	var w shmWire
	if err := codec.Unmarshal(data, &w); err != nil {
		return fmt.Errorf("mp: decode SharedMemory: %w", err)
	}
	fd, kind, err := codec.DecodeHandle(w.Mem, codec.HandleShared)
	if err != nil {
		return err
	}
	if kind != kindSharedMemory {
		closeFD(fd)
		return fmt.Errorf("mp: a %s arrived where a SharedMemory was expected", kindName(kind))
	}
	check := checkShmName
	if w.Posix {
		check = checkPosixShmName
	}
	if err := check(w.Name); err != nil {
		closeFD(fd)
		return err
	}
	got, err := mapShm(w.Name, fd)
	if err != nil {
		return err
	}
	// The cleanup belongs to got; move the block into m.
	got.stop.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.name, m.size, m.ino, m.dev, m.fd, m.mem = got.name, got.size, got.ino, got.dev, got.fd, got.mem
	m.posix = w.Posix
	m.stop = runtime.AddCleanup(m, closeFDCleanup, m.fd)
	return nil
}

func checkShmName(name string) error {
	if name == "" || len(name) > maxShmName || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("mp: invalid shared memory name %q (1 to %d bytes, no NUL)", name, maxShmName)
	}
	return nil
}

func randomShmName() (string, error) {
	var b [shmRandomBytes]byte
	for n := 0; n < len(b); {
		k, err := unix.Getrandom(b[n:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", os.NewSyscallError("getrandom", err)
		}
		n += k
	}
	return "psm_" + hex.EncodeToString(b[:]), nil
}

func shmAddr(name string) *unix.SockaddrUnix {
	return &unix.SockaddrUnix{Name: "@" + shmPrefix + name}
}

func shmStatusError(name string, status byte) error {
	switch status {
	case statusDenied:
		return fmt.Errorf("mp: shared memory %q belongs to another user: %w", name, os.ErrPermission)
	case statusGone:
		return fmt.Errorf("mp: shared memory %q now names another block: %w", name, os.ErrNotExist)
	}
	return fmt.Errorf("mp: shared memory %q: bad reply %q from its creator", name, status)
}

// newShmFD makes the memfd of a block, its size sealed.
func newShmFD(name string, size int) (int, error) {
	fd, err := unix.MemfdCreate(shmPrefix+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, os.NewSyscallError("memfd_create", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}

// mapShm maps the block behind fd, taking ownership of fd.
func mapShm(name string, fd int) (*SharedMemory, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size <= 0 || st.Size > maxSharedBytes {
		unix.Close(fd)
		return nil, fmt.Errorf("mp: shared memory %q: descriptor is not a block (size %d)", name, st.Size)
	}
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("mmap", err)
	}
	m := &SharedMemory{name: name, size: int(st.Size), ino: st.Ino, dev: st.Dev, fd: fd, mem: mem}
	m.stop = runtime.AddCleanup(m, closeFDCleanup, fd)
	return m, nil
}

// closeFDCleanup closes the descriptor of a SharedMemory that is garbage
// without having been closed. Its mapping stays: Bytes may still be in use.
func closeFDCleanup(fd int) { unix.Close(fd) }

// ---- POSIX names: files in /dev/shm ----

// posixShmDir is where glibc's shm_open, and so CPython, keeps blocks.
const posixShmDir = "/dev/shm/"

// posixShmName returns name without its leading slashes (glibc's
// shm_open drops them, and Python's name property the one it adds).
func posixShmName(name string) string { return strings.TrimLeft(name, "/") }

func checkPosixShmName(name string) error {
	if name == "" || len(name) > 255 || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("mp: invalid POSIX shared memory name %q (1 to 255 bytes after the leading \"/\", no \"/\" or NUL)", name)
	}
	return nil
}

// newPosixShm creates /dev/shm/name as CPython's SharedMemory(create=True)
// does: exclusively, mode 0600, then sized.
func newPosixShm(name string, size int) (*SharedMemory, error) {
	generate := name == ""
	name = posixShmName(name)
	if !generate {
		if err := checkPosixShmName(name); err != nil {
			return nil, err
		}
	}
	for tries := 0; ; tries++ {
		if generate {
			var err error
			if name, err = randomShmName(); err != nil {
				return nil, err
			}
		}
		fd, err := unix.Open(posixShmDir+name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST && generate && tries < 10 {
			continue
		}
		if err != nil {
			return nil, posixShmError(name, "open", err)
		}
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			unix.Close(fd)
			unix.Unlink(posixShmDir + name)
			return nil, os.NewSyscallError("ftruncate", err)
		}
		m, err := mapShm(name, fd)
		if err != nil {
			unix.Unlink(posixShmDir + name)
			return nil, err
		}
		m.posix = true
		return m, nil
	}
}

// attachPosixShm maps /dev/shm/name, made by Go or by Python.
func attachPosixShm(name string) (*SharedMemory, error) {
	name = posixShmName(name)
	if err := checkPosixShmName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Open(posixShmDir+name, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, posixShmError(name, "open", err)
	}
	// As for served names: trust only memory of this user (or root).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fstat", err)
	}
	if !uidAllowed(st.Uid) {
		unix.Close(fd)
		return nil, fmt.Errorf("mp: shared memory %q belongs to user %d: %w", name, st.Uid, os.ErrPermission)
	}
	m, err := mapShm(name, fd)
	if err != nil {
		return nil, err
	}
	m.posix = true
	return m, nil
}

// unlinkPosixShm removes /dev/shm/name if it is still the file dev, ino.
// Between the check and the removal another process could replace the
// file; only processes of the same user can, and Python does not check
// at all.
func unlinkPosixShm(name string, dev, ino uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(posixShmDir+name, &st); err != nil {
		return posixShmError(name, "stat", err)
	}
	if st.Dev != dev || st.Ino != ino {
		return fmt.Errorf("mp: shared memory %q now names another block: %w", name, os.ErrNotExist)
	}
	if err := unix.Unlink(posixShmDir + name); err != nil {
		return posixShmError(name, "unlink", err)
	}
	return nil
}

// posixShmError wraps an errno so that it matches os.ErrExist,
// os.ErrNotExist or os.ErrPermission as it should.
func posixShmError(name, op string, err error) error {
	return fmt.Errorf("mp: shared memory %q: %w", name, &os.PathError{Op: op, Path: posixShmDir + name, Err: err})
}

// ---- the creator's side ----

// shmServers are the names this process serves, by name.
var shmServers = struct {
	sync.Mutex
	byName map[string]*shmServer
}{byName: map[string]*shmServer{}}

// shmServer serves one name: it hands its descriptor of the memory to
// attachers until it is stopped.
type shmServer struct {
	name string
	ino  uint64
	fd   int // this server's descriptor of the memory, closed when it ends
	lf   *os.File
	rc   syscall.RawConn

	mu       sync.Mutex
	stopped  bool
	conns    map[*os.File]struct{}
	handlers sync.WaitGroup

	acceptDone chan struct{} // closed when the name is gone
	done       chan struct{} // closed when every goroutine has ended
}

// listenShm binds the name; unix.EADDRINUSE means it is taken.
func listenShm(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, shmAddr(name)); err != nil {
		unix.Close(fd)
		if err == unix.EADDRINUSE {
			return -1, err
		}
		return -1, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("listen", err)
	}
	return fd, nil
}

// serveShm starts serving name from lfd, handing out fd; it takes
// ownership of both.
func serveShm(name string, ino uint64, fd, lfd int) error {
	lf := os.NewFile(uintptr(lfd), "mp-shm-listener")
	rc, err := lf.SyscallConn()
	if err != nil {
		lf.Close()
		unix.Close(fd)
		return err
	}
	s := &shmServer{name: name, ino: ino, fd: fd, lf: lf, rc: rc,
		conns: map[*os.File]struct{}{}, acceptDone: make(chan struct{}), done: make(chan struct{})}
	shmServers.Lock()
	shmServers.byName[name] = s
	shmServers.Unlock()
	go s.serve()
	return nil
}

func (s *shmServer) serve() {
	defer close(s.done)
	for {
		var cfd int
		var aerr error
		err := s.rc.Read(func(fd uintptr) bool {
			for {
				cfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
				switch aerr {
				case unix.EINTR, unix.ECONNABORTED:
					continue
				case unix.EAGAIN:
					return false
				}
				return true
			}
		})
		if err != nil {
			break // stopped
		}
		if aerr != nil {
			// Out of descriptors, say: let them be freed, then go on.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f := os.NewFile(uintptr(cfd), "mp-shm-conn")
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			f.Close()
			continue
		}
		s.conns[f] = struct{}{}
		s.handlers.Add(1)
		s.mu.Unlock()
		go s.handle(f)
	}
	close(s.acceptDone)
	s.handlers.Wait()
	unix.Close(s.fd)
}

// handle answers one request.
func (s *shmServer) handle(f *os.File) {
	defer s.handlers.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, f)
		s.mu.Unlock()
		f.Close()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	var cred *unix.Ucred
	cerr := rc.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil || err != nil {
		return
	}
	// Read the request even from a peer that will be refused, so that its
	// write never fails and it gets the reason.
	f.SetDeadline(time.Now().Add(shmTimeout))
	var req [9]byte
	if _, err := io.ReadFull(f, req[:]); err != nil {
		return
	}
	if !uidAllowed(cred.Uid) {
		sendShmReply(rc, statusDenied, -1)
		return
	}
	switch req[0] {
	case opAttach:
		sendShmReply(rc, statusOK, s.fd)
	case opUnlink:
		if binary.LittleEndian.Uint64(req[1:]) != s.ino {
			sendShmReply(rc, statusGone, -1)
			return
		}
		s.shutdown(f)
		<-s.acceptDone // the name is free once the reply arrives
		sendShmReply(rc, statusOK, -1)
	}
}

// shutdown stops serving the name: the listener and every connection but
// keep are closed. The goroutines end soon after.
func (s *shmServer) shutdown(keep *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	shmServers.Lock()
	if shmServers.byName[s.name] == s {
		delete(shmServers.byName, s.name)
	}
	shmServers.Unlock()
	s.lf.Close()
	for f := range s.conns {
		if f != keep {
			f.Close()
		}
	}
}

// stop stops serving and waits until the goroutines have ended.
func (s *shmServer) stop() {
	s.shutdown(nil)
	<-s.done
}

// uidAllowed reports whether a peer running as uid may share a block with
// this process: the same user, or root (who could read it anyway).
func uidAllowed(uid uint32) bool {
	return uid == uint32(os.Geteuid()) || uid == 0
}

func sendShmReply(rc syscall.RawConn, status byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	var serr error
	err := rc.Write(func(s uintptr) bool {
		for {
			serr = unix.Sendmsg(int(s), []byte{status}, oob, nil, unix.MSG_NOSIGNAL)
			switch serr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// ---- the attacher's side ----

// shmRequest sends a request to the process serving name and returns its
// status and the descriptor that came with it (or -1).
func shmRequest(name string, op byte, ino uint64) (status byte, fd int, err error) {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return 0, -1, os.NewSyscallError("socket", err)
	}
	defer unix.Close(s)
	notExist := fmt.Errorf("mp: shared memory %q: %w", name, os.ErrNotExist)
	deadline := time.Now().Add(shmTimeout)
	for {
		err = unix.Connect(s, shmAddr(name))
		switch {
		case err == nil:
		case err == unix.EINTR:
			continue
		case err == unix.ECONNREFUSED || err == unix.ENOENT:
			return 0, -1, notExist
		case err == unix.EAGAIN && time.Now().Before(deadline):
			// The creator's backlog is full.
			time.Sleep(time.Millisecond)
			continue
		default:
			return 0, -1, fmt.Errorf("mp: shared memory %q: %w", name, os.NewSyscallError("connect", err))
		}
		break
	}
	// Anyone may bind an abstract name: make sure the server is a process
	// of this user before trusting its memory (or asking it anything).
	cred, err := unix.GetsockoptUcred(s, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, -1, os.NewSyscallError("getsockopt", err)
	}
	if !uidAllowed(cred.Uid) {
		return 0, -1, fmt.Errorf("mp: shared memory %q is served by user %d: %w", name, cred.Uid, os.ErrPermission)
	}
	var req [9]byte
	req[0] = op
	binary.LittleEndian.PutUint64(req[1:], ino)
	for {
		_, err = unix.Write(s, req[:])
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		if err == unix.EPIPE || err == unix.ECONNRESET {
			return 0, -1, notExist
		}
		return 0, -1, os.NewSyscallError("write", err)
	}
	pfd := []unix.PollFd{{Fd: int32(s), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, -1, fmt.Errorf("mp: shared memory %q: its creator did not answer within %v", name, shmTimeout)
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return 0, -1, os.NewSyscallError("poll", err)
		}
		break
	}
	var buf [1]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	for {
		n, oobn, _, _, err = unix.Recvmsg(s, buf[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	fd = -1
	if err == nil && oobn > 0 {
		fd = takeOneFD(oob[:oobn])
	}
	switch {
	case err == unix.ECONNRESET || (err == nil && n == 0):
		// The name was unlinked while we asked.
		err = notExist
	case err != nil:
		err = os.NewSyscallError("recvmsg", err)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return 0, -1, err
	}
	return buf[0], fd, nil
}

// takeOneFD returns the first descriptor of a control message, closing
// any others; -1 if there is none.
func takeOneFD(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1
	}
	fd := -1
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, f := range fds {
			if fd < 0 {
				fd = f
			} else {
				unix.Close(f)
			}
		}
	}
	return fd
}

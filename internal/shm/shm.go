//go:build linux

// Package shm maps anonymous shared memory (memfd) that travels between
// processes as a file descriptor. Nothing is ever left in /dev/shm: the
// memory is freed when the last process holding the descriptor or a
// mapping of it is gone.
package shm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Segment is a shared mapping of a memfd.
type Segment struct {
	mu   sync.Mutex
	fd   int
	mem  []byte
	refs int
}

// ErrClosed is returned for a closed Segment.
var ErrClosed = errors.New("mp: shared memory closed")

// A segment's size is sealed when it is made: a process that shrank it
// would make every other process touching the lost pages die of SIGBUS.
// Open refuses a descriptor whose size is not sealed.
const sizeSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// New makes a zero-filled segment of size bytes (rounded up to a page).
func New(name string, size int) (*Segment, error) {
	if size <= 0 {
		return nil, fmt.Errorf("mp: shared memory size %d must be positive", size)
	}
	fd, err := unix.MemfdCreate("mp-"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	page := os.Getpagesize()
	size = (size + page - 1) / page * page
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, sizeSeals|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return mapFD(fd, size)
}

// Open maps the segment behind fd, taking ownership of fd. It refuses a
// descriptor whose size is not sealed (see New).
func Open(fd int) (*Segment, error) {
	if seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil || seals&sizeSeals != sizeSeals {
		unix.Close(fd)
		return nil, errors.New("mp: shared memory descriptor whose size is not sealed")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Size <= 0 || st.Size > 1<<46 {
		unix.Close(fd)
		return nil, fmt.Errorf("mp: shared memory descriptor of size %d", st.Size)
	}
	return mapFD(fd, int(st.Size))
}

func mapFD(fd, size int) (*Segment, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("mmap", err)
	}
	return &Segment{fd: fd, mem: mem, refs: 1}, nil
}

// Bytes returns the mapped memory. It is valid until the last Close.
func (s *Segment) Bytes() []byte { return s.mem }

// FD returns the descriptor (owned by the Segment), or -1 once closed.
func (s *Segment) FD() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return -1
	}
	return s.fd
}

// Ref adds a reference; each reference is dropped by one Close.
func (s *Segment) Ref() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return ErrClosed
	}
	s.refs++
	return nil
}

// Close drops a reference; the last one unmaps the memory and closes the
// descriptor.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return nil
	}
	s.refs--
	if s.refs > 0 {
		return nil
	}
	err := unix.Munmap(s.mem)
	unix.Close(s.fd)
	s.mem = nil
	s.fd = -1
	return err
}

// Uint32 returns the 32-bit word at byte offset off, which must be 4-byte
// aligned and inside the segment.
func (s *Segment) Uint32(off int) *atomic.Uint32 {
	if off%4 != 0 || off+4 > len(s.mem) {
		panic(fmt.Sprintf("shm: bad uint32 offset %d", off))
	}
	return (*atomic.Uint32)(unsafe.Pointer(&s.mem[off]))
}

// Uint64 returns the 64-bit word at byte offset off (8-byte aligned).
func (s *Segment) Uint64(off int) *atomic.Uint64 {
	if off%8 != 0 || off+8 > len(s.mem) {
		panic(fmt.Sprintf("shm: bad uint64 offset %d", off))
	}
	return (*atomic.Uint64)(unsafe.Pointer(&s.mem[off]))
}

// Int64 returns the signed 64-bit word at byte offset off (8-byte aligned).
func (s *Segment) Int64(off int) *atomic.Int64 {
	if off%8 != 0 || off+8 > len(s.mem) {
		panic(fmt.Sprintf("shm: bad int64 offset %d", off))
	}
	return (*atomic.Int64)(unsafe.Pointer(&s.mem[off]))
}

//go:build linux

package ringconn

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/go-mp/mp/internal/connerr"
	"golang.org/x/sys/unix"
)

// sock is a Socket for the tests, over a unix socket pair of
// SOCK_SEQPACKET: a message goes as one packet, a byte then its content,
// so that an empty message and the end differ. (The package's users
// pass an *mp.Conn, which the tests cannot import: the root package
// imports this one.) Reads go through the runtime's poller, so that
// Close wakes a Poll in progress, as it does an mp.Conn's.
type sock struct {
	f  *os.File
	rc syscall.RawConn
}

// socketPair returns the two ends of a new connection.
func socketPair() (*sock, *sock, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var s [2]*sock
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "ringconn-test-sock")
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, nil, err
		}
		s[i] = &sock{f: f, rc: rc}
	}
	return s[0], s[1], nil
}

func (s *sock) SendBytes(b []byte) error {
	_, err := s.f.Write(append([]byte{0}, b...))
	return err
}

func (s *sock) RecvBytes(maxLength int) ([]byte, error) {
	buf := make([]byte, maxLength+2)
	n, err := s.f.Read(buf)
	switch {
	case err != nil:
		return nil, err // io.EOF at the peer's end
	case n == 0:
		return nil, io.EOF
	case n > maxLength+1:
		return nil, fmt.Errorf("%w: over %d bytes", connerr.ErrMessageTooLong, maxLength)
	}
	return buf[1:n], nil
}

func (s *sock) Poll(timeout time.Duration) (bool, error) {
	ready := false
	if timeout == 0 {
		// Through the poller with a deadline of now, the read would
		// fail as past its deadline before it looked, and a Poll(0)
		// would never see anything: look once, here.
		err := s.rc.Control(func(fd uintptr) { ready = readable(fd) })
		return ready, err
	}
	if timeout > 0 {
		s.f.SetReadDeadline(time.Now().Add(timeout))
		defer s.f.SetReadDeadline(time.Time{})
	}
	err := s.rc.Read(func(fd uintptr) bool {
		ready = readable(fd)
		return ready
	})
	if os.IsTimeout(err) {
		return false, nil
	}
	return ready, err
}

// readable reports whether fd has a message or its end to read now.
func readable(fd uintptr) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(p, 0)
	return n > 0
}

func (s *sock) Fileno() (int, error) {
	fd := -1
	if err := s.rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

func (s *sock) Close() error { return s.f.Close() }

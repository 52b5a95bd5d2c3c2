package mp

import (
	"context"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Waitable is an object [Wait] can wait on: a *Conn (ready when a message or
// EOF can be received) or a *Process (ready when the child has ended).
type Waitable interface {
	// waitFD returns a descriptor that polls readable when the object is
	// ready, or ready=true when it is ready already.
	waitFD() (fd int, ready bool, err error)
}

func (c *Conn) waitFD() (int, bool, error) {
	if err := c.checkRead(); err != nil {
		return -1, false, err
	}
	if c.buffered.Load() > 0 {
		return -1, true, nil
	}
	fd, err := c.Fileno()
	return fd, false, err
}

func (p *Process) waitFD() (int, bool, error) {
	select {
	case <-p.done:
		return -1, true, nil
	default:
	}
	fd, err := p.Sentinel()
	return fd, false, err
}

// Wait blocks until at least one of objs is ready and returns the ready
// ones, like Python's multiprocessing.connection.wait. When ctx ends first
// it returns no objects and ctx.Err().
func Wait(ctx context.Context, objs ...Waitable) ([]Waitable, error) {
	pfds := make([]unix.PollFd, 0, len(objs)+1)
	var ready []Waitable
	for _, o := range objs {
		fd, ok, err := o.waitFD()
		if err != nil {
			return nil, err
		}
		if ok {
			ready = append(ready, o)
		}
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	if len(ready) > 0 {
		return ready, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := -1
	if dl, ok := ctx.Deadline(); ok {
		timeout = int(time.Until(dl).Milliseconds()) + 1
	}
	if ctx.Done() != nil {
		wake, stop, err := wakeOnDone(ctx)
		if err != nil {
			return nil, err
		}
		defer stop()
		pfds = append(pfds, unix.PollFd{Fd: int32(wake), Events: unix.POLLIN})
	}
	for {
		_, err := unix.Poll(pfds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("poll", err)
		}
		break
	}
	for i, o := range objs {
		if pfds[i].Revents != 0 {
			ready = append(ready, o)
		}
	}
	if len(ready) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, context.DeadlineExceeded
	}
	return ready, nil
}

// wakeOnDone returns an eventfd that turns readable when ctx is done.
func wakeOnDone(ctx context.Context) (int, func(), error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, nil, os.NewSyscallError("eventfd", err)
	}
	var mu sync.Mutex
	closed := false
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}
	})
	return efd, func() {
		stopAfter()
		mu.Lock()
		closed = true
		unix.Close(efd)
		mu.Unlock()
	}, nil
}

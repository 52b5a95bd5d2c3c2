//go:build linux

package mp

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Waitable is an object [Wait] can wait on: a *Conn (ready when a message or
// EOF can be received) or a *Process (ready when the child has ended). No
// other type implements it.
type Waitable interface {
	// waitFD returns a descriptor that polls readable when the object is
	// ready, or ready=true when it is ready already.
	waitFD() (fd int, ready bool, err error)
}

// errNilWaitable is Wait's error for a nil argument.
var errNilWaitable = fmt.Errorf("mp: Wait on a nil object: %w", os.ErrInvalid)

func (c *Conn) waitFD() (int, bool, error) {
	if c == nil {
		return -1, false, errNilWaitable
	}
	if err := c.checkRead(); err != nil {
		return -1, false, err
	}
	if c.buffered.Load() > 0 {
		return -1, true, nil
	}
	if c.pipe != nil {
		if pr := c.pipe.ring.Load(); pr != nil && c.pipeWaitReady(pr) {
			return -1, true, nil
		}
	}
	fd, err := c.Fileno()
	return fd, false, err
}

func (p *Process) waitFD() (int, bool, error) {
	if p == nil {
		return -1, false, errNilWaitable
	}
	p.mu.Lock()
	err := p.usable()
	p.mu.Unlock()
	if err != nil {
		return -1, false, err
	}
	select {
	case <-p.done:
		return -1, true, nil // no need for a sentinel pipe
	default:
	}
	fd, err := p.Sentinel()
	return fd, false, err
}

// Wait blocks until at least one of objs is ready and returns every one
// that is ready, in the order given, like Python's
// multiprocessing.connection.wait. What is ready when Wait is called is
// returned even if ctx is already done: Wait with a done ctx looks without
// waiting, as wait(timeout=0) does. When ctx ends before anything is
// ready, Wait returns no objects and ctx.Err(). A nil object is an error
// matching os.ErrInvalid.
//
// The result holds the objects passed in, of their type: waiting on
// *Conns gives *Conns, ready to receive from, and each result is == to
// the object passed in. To wait on Conns and Processes together, let T be
// Waitable:
//
//	ready, err := mp.Wait[mp.Waitable](ctx, conn, proc)
//	if len(ready) > 0 && ready[0] == proc { ... }
func Wait[T Waitable](ctx context.Context, objs ...T) ([]T, error) {
	// One poll reports every descriptor ready at its return; an object
	// known to be ready without one (a buffered message, a reaped child)
	// gets fd -1, which poll skips, and turns the poll into a look.
	pfds := make([]unix.PollFd, len(objs), len(objs)+1)
	known := make([]bool, len(objs))
	look := ctx.Err() != nil
	for i, o := range objs {
		if any(o) == nil {
			return nil, errNilWaitable
		}
		fd, ok, err := o.waitFD()
		if err != nil {
			return nil, err
		}
		known[i] = ok
		look = look || ok
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	timeout := -1
	if look {
		timeout = 0
	} else if ctx.Done() != nil {
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
			continue // the revents are not filled in
		}
		if err != nil {
			return nil, os.NewSyscallError("poll", err)
		}
		var ready []T
		for i, o := range objs {
			if known[i] || pfds[i].Revents != 0 {
				ready = append(ready, o)
			}
		}
		if len(ready) > 0 {
			return ready, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
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

// Package futex wraps the Linux futex system call for words in memory
// shared between processes (no FUTEX_PRIVATE_FLAG), without cgo.
package futex

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opWait = 0 // FUTEX_WAIT
	opWake = 1 // FUTEX_WAKE
)

// Wait sleeps while *addr == val, until woken by Wake, until timeout
// passes (timeout < 0 means no limit) or spuriously. It reports whether it
// returned because the timeout passed. The caller re-checks its condition
// either way.
func Wait(addr *atomic.Uint32, val uint32, timeout time.Duration) (timedOut bool) {
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait, uintptr(val),
		uintptr(unsafe.Pointer(ts)), 0, 0)
	return errno == unix.ETIMEDOUT
}

// Wake wakes up to n waiters sleeping on addr and returns how many it woke.
func Wake(addr *atomic.Uint32, n int) int {
	if n <= 0 {
		return 0
	}
	if n > 1<<30 {
		n = 1 << 30
	}
	r, _, _ := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake, uintptr(n), 0, 0, 0)
	return int(r)
}

// WakeAll wakes every waiter sleeping on addr.
func WakeAll(addr *atomic.Uint32) int { return Wake(addr, 1<<30) }

//go:build linux

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
	// Direct calls, with the pointers converted in the argument lists:
	// that keeps what they point to alive and in place for the call.
	ts := timespec(timeout)
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait, uintptr(val),
		uintptr(unsafe.Pointer(ts)), 0, 0)
	return errno == unix.ETIMEDOUT
}

// WaitHoldingP is Wait without telling the Go scheduler that the thread
// sleeps: the thread keeps its P. The runtime's monitor then neither
// hands the P off nor, to do so, wakes up every 20 µs while sleeps come
// one after the other, in every process that sleeps this way. But no
// other goroutine runs on that P meanwhile (leave the process others),
// and the runtime interrupts the sleep every 10 ms or so to preempt it,
// which returns as a spurious wake.
func WaitHoldingP(addr *atomic.Uint32, val uint32, timeout time.Duration) (timedOut bool) {
	ts := timespec(timeout)
	_, _, errno := unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait, uintptr(val),
		uintptr(unsafe.Pointer(ts)), 0, 0)
	return errno == unix.ETIMEDOUT
}

// timespec is a wait's timeout for the system call: nil for no limit.
func timespec(timeout time.Duration) *unix.Timespec {
	if timeout < 0 {
		return nil
	}
	t := unix.NsecToTimespec(int64(timeout))
	return &t
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

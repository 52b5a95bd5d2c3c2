//go:build linux

package shm

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// An owner word identifies a process in shared memory: the pid in the low
// 30 bits and the process's start time (in clock ticks since boot, its low
// 32 bits) in the high half, so that a reused pid is not mistaken for the
// process that died.

// PidMask selects the pid of an owner word.
const PidMask = 1<<30 - 1

var self = sync.OnceValue(func() uint64 {
	pid := os.Getpid()
	st, _ := startTime(pid)
	return uint64(st)<<32 | uint64(pid&PidMask)
})

// Self returns the owner word of the calling process.
func Self() uint64 { return self() }

// Alive reports whether the process an owner word names is still running.
// A zombie (dead, not yet reaped) counts as dead.
func Alive(owner uint64) bool {
	pid := int(owner & PidMask)
	if pid == 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return false
	}
	st, state := startTime(pid)
	if state == 0 {
		// /proc is unreadable; trust kill.
		return true
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	return uint32(st) == uint32(owner>>32)
}

// startTime reads the start time and state of pid from /proc.
func startTime(pid int) (uint64, byte) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0
	}
	f := bytes.Fields(b[i+2:])
	// f[0] is the state (field 3); the start time is field 22.
	if len(f) < 20 {
		return 0, 0
	}
	st, _ := strconv.ParseUint(string(f[19]), 10, 64)
	return st, f[0][0]
}

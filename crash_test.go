//go:build linux

package mp_test

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// stopAt returns a crash-point function (see mp.SetCrashPointForTest) that
// stops the calling process with SIGSTOP the first time it reaches the
// point named where, so that the parent can kill it exactly there.
func stopAt(where string) func(string) { return stopAtNth(where, 0) }

// stopAtNth is stopAt at the point's n+1st passage.
func stopAtNth(where string, n int) func(string) {
	return func(w string) {
		if w != where {
			return
		}
		if n > 0 {
			n--
			return
		}
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		// The stop may take effect only after kill returns (the signal
		// waits in the process's queue for a thread to take it): sleep,
		// so that this goroutine never goes past the point.
		for {
			time.Sleep(time.Hour)
		}
	}
}

// waitStopped waits until process pid is stopped by a signal.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	waitFor(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("process %d: %v", pid, err)
		}
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(b, ')')
		return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
	})
}

//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/bench"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"
)

// The worker process of cluster_floor does not outlive `mp bench` killed
// while it runs: its connection to the server, which was in mp, closes,
// and it exits (within 10 s here; it takes well under a second).
//
// The test holds the worker stopped (SIGSTOP) whenever it needs the run
// not to end: mp cannot finish without the worker's answers. It sees an
// answer of the worker on a connection of its own to mp's server (so the
// worker is in its loop, past its connect), stops the worker, checks
// that mp and the worker are both alive, kills mp, lets the worker go on
// and waits for its end through a pidfd (it is not this process's child
// and is reparented once mp dies). An attempt that finds the run over
// before the worker could be held is made again, up to three times.
func TestBenchFloorWorkerDiesWithParent(t *testing.T) {
	bin := buildMP(t)
	for i := range 3 {
		late := floorKillAttempt(t, bin)
		if late == "" {
			return
		}
		t.Logf("attempt %d: %s", i+1, late)
	}
	t.Fatal("three attempts found the benchmark over before the test held its worker")
}

// floorKillAttempt runs one attempt of TestBenchFloorWorkerDiesWithParent.
// It returns why the attempt could not be made (the run was over too
// soon), or "" once it has checked the worker's end; it fails t if the
// worker outlives mp. Whatever happens, it leaves no process behind.
func floorKillAttempt(t *testing.T, bin string) (late string) {
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// A file, not a pipe, for its output: the worker holds mp's stderr,
	// and Wait would wait for a pipe's end to close.
	cmd := exec.Command(bin, "bench", "-json", "-scale", "1", "cluster_floor")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	defer func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	output := func() string {
		b, _ := os.ReadFile(out.Name())
		return string(b)
	}

	pid, pidfd, url := awaitFloorWorker(t, cmd.Process.Pid, output)
	if pid == 0 {
		return "the benchmark ended before its worker was seen"
	}
	defer func() {
		// Dead already, or killed here: nothing is left behind.
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		awaitPidfd(pidfd, 10*time.Second)
		unix.Close(pidfd)
	}()
	signal := func(sig unix.Signal) {
		if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			t.Fatalf("signal %v to the worker: %v", sig, err)
		}
	}
	signal(unix.SIGSTOP)

	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		return fmt.Sprintf("cannot reach mp's server: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("mpfloor.res")
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		return fmt.Sprintf("cannot subscribe to the worker's answers: %v", err)
	}
	signal(unix.SIGCONT)
	if _, err := sub.NextMsg(time.Minute); err != nil {
		return fmt.Sprintf("no answer of the worker: %v", err)
	}
	signal(unix.SIGSTOP)
	// Both alive: the worker stopped (not a zombie), mp not a zombie (it
	// is this process's child, not reaped yet: ended, it would be one).
	if st := awaitProcState(t, pid, "TZ"); st != "T" {
		return "the worker ended before it was held (state " + st + ")"
	}
	if st, _ := procState(cmd.Process.Pid); st == "Z" || st == "" {
		return "mp ended before it was killed"
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	reaped = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("mp ended with %v, not by the SIGKILL sent while it ran; its output:\n%s", err, output())
	}
	nc.Close()
	signal(unix.SIGCONT)

	start := time.Now()
	ended, err := awaitPidfd(pidfd, 10*time.Second)
	if err != nil {
		t.Fatalf("poll the worker's pidfd: %v", err)
	}
	if !ended {
		st, _ := procState(pid)
		t.Fatalf("the floor worker (pid %d, state %q) outlived its killed parent by 10 s; mp's output:\n%s", pid, st, output())
	}
	t.Logf("the worker ended %v after mp was killed", time.Since(start).Round(time.Millisecond))
	return ""
}

// awaitPidfd waits, d at most, for the process of pidfd to end (to be
// a zombie or gone: it need not be this process's child), and reports
// whether it did.
func awaitPidfd(pidfd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0).Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n > 0, err
	}
}

// awaitFloorWorker waits (a minute at most) for the worker of
// cluster_floor, a child of mp (pid parent) whose environment has
// bench.FloorEnv, and returns its pid, a pidfd of it and the server URL
// it was given; pid 0 if mp ended first.
func awaitFloorWorker(t *testing.T, parent int, output func() string) (pid, pidfd int, url string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if st, _ := procState(parent); st == "Z" || st == "" {
			return 0, 0, ""
		}
		dirs, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			url := floorURL(pid, parent)
			if url == "" {
				continue
			}
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue // gone
			}
			// Still the same process: a pid reused since the scan would
			// not be mp's child with that environment.
			if floorURL(pid, parent) != url {
				unix.Close(fd)
				continue
			}
			return pid, fd, url
		}
	}
	t.Fatalf("no cluster_floor worker under mp (pid %d) within a minute; its output:\n%s", parent, output())
	return 0, 0, ""
}

// floorURL returns the server URL of process pid if it is a live child
// of parent with bench.FloorEnv in its environment, else "".
func floorURL(pid, parent int) string {
	st, ppid := procState(pid)
	if st == "" || st == "Z" || ppid != parent {
		return ""
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if url, ok := strings.CutPrefix(kv, bench.FloorEnv+"="); ok {
			return url
		}
	}
	return ""
}

// procState returns the state letter (R, S, T, Z...) and parent of
// process pid, from /proc/pid/stat; "" if it is gone.
func procState(pid int) (state string, ppid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// The name, in parentheses, may hold spaces and parentheses itself.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid
}

// awaitProcState waits (10 s at most) for process pid to be in one of
// the states in states, or gone (""), and returns the state it found.
func awaitProcState(t *testing.T, pid int, states string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if st, _ := procState(pid); st == "" || strings.Contains(states, st) {
			return st
		}
	}
	st, _ := procState(pid)
	t.Fatalf("process %d still in state %q after 10 s, want one of %q", pid, st, states)
	return ""
}

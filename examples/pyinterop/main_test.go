//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// build builds the example into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the example: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "pyinterop")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runExample runs the built example with env added to its environment.
func runExample(t *testing.T, bin string, env ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(cmd.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestPyInterop runs the example against the python3 on PATH: Python
// takes the Go program's jobs and stores results that Go reads, and sums
// and doubles the float64s Go wrote to shared memory.
func TestPyInterop(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 is needed to run this example: %v", err)
	}
	out, errOut, err := runExample(t, build(t))
	if err != nil || errOut != "" {
		t.Fatalf("pyinterop: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	for _, want := range []string{
		`go: put 2 jobs on the queue "jobs"`,
		`go: wrote 1000 float64s \(0 to 999\) to shared memory "psm_[0-9a-f]+"`,
		`python: took 'resize photo-1\.jpg' from the Go queue, stored 18 in the dict`,
		`python: took 'resize photo-22\.jpg' from the Go queue, stored 19 in the dict`,
		`python: summed 1000 float64s in shared memory 'psm_[0-9a-f]+': 499500; doubled them`,
		`go: results\["resize photo-1\.jpg"\] = 18`,
		`go: results\["resize photo-22\.jpg"\] = 19`,
		`go: results\["sum"\] = 499500`,
		`go: the float64s Python doubled now sum to 999000`,
	} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(out) {
			t.Errorf("no line %s in the output:\n%s", want, out)
		}
	}
	// The example unlinks the block it made.
	if name := regexp.MustCompile(`"(psm_[0-9a-f]+)"`).FindStringSubmatch(out); name != nil {
		if _, err := os.Stat("/dev/shm/" + name[1]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/dev/shm/%s left behind (stat: %v)", name[1], err)
		}
	}
}

// TestPyInteropNoPython runs the example with a PATH that has no python3:
// it must say so and exit with status 2, not fail some other way.
func TestPyInteropNoPython(t *testing.T) {
	out, errOut, err := runExample(t, build(t), "PATH="+t.TempDir())
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("pyinterop without python3: %v, want exit status 2\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "python3 is not on PATH") {
		t.Errorf("stderr %q does not say that python3 is missing", errOut)
	}
}

//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildMP builds this command into a temporary directory.
func buildMP(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is needed: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServe starts `mp manager serve` and returns it with the first lines
// it prints.
func startServe(t *testing.T, ctx context.Context, bin string, env []string, args ...string) (*exec.Cmd, []string) {
	t.Helper()
	return startPrinting(t, ctx, bin, env, func(line string) bool {
		return strings.HasPrefix(line, "serving on ") && len(env) > 0 || strings.HasPrefix(line, "authkey ")
	}, append([]string{"manager", "serve"}, args...)...)
}

// startPrinting starts bin with args and returns it with the lines it
// prints up to the one last says is the last; the test's cleanup kills
// it.
func startPrinting(t *testing.T, ctx context.Context, bin string, env []string, last func(string) bool, args ...string) (*exec.Cmd, []string) {
	t.Helper()
	cmd, lines, err := tryPrinting(t, ctx, bin, env, last, args...)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, lines
}

// tryPrinting is startPrinting, returning an error when the program
// printed nothing (it failed to start: its standard error says why).
func tryPrinting(t *testing.T, ctx context.Context, bin string, env []string, last func(string) bool, args ...string) (*exec.Cmd, []string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if last(sc.Text()) {
			break
		}
	}
	if len(lines) == 0 {
		cmd.Wait()
		return nil, nil, fmt.Errorf("%s printed nothing; stderr:\n%s", strings.Join(args, " "), &stderr)
	}
	return cmd, lines, nil
}

// TestManagerServe runs `mp manager serve` on TCP and two independent
// programs against it: one gets from a queue, waiting, while the other
// puts to it.
func TestManagerServe(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := []string{"MP_AUTHKEY=hex:0123456789abcdef0123456789abcdef"}
	serve, lines := startServe(t, ctx, bin, env, "-addr", "127.0.0.1:0")
	addr, ok := strings.CutPrefix(lines[0], "serving on tcp ")
	if !ok {
		t.Fatalf("serve printed %q", lines)
	}
	client := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, append([]string{"manager", args[0], "-addr", addr}, args[1:]...)...)
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}

	getter := client("get", "-queue", "jobs", "-n", "3", "-timeout", "60s")
	var got, getErr bytes.Buffer
	getter.Stdout, getter.Stderr = &got, &getErr
	if err := getter.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the getter waits in the server.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := client("stats").Output()
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		if strings.Contains(string(out), "waiting 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the getter never waited: stats %q, getter stderr %q", out, &getErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := client("put", "-queue", "jobs", "a", "b c", "d").CombinedOutput(); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	if err := getter.Wait(); err != nil {
		t.Fatalf("get: %v\n%s", err, &getErr)
	}
	if got.String() != "a\nb c\nd\n" {
		t.Errorf("get printed %q", got.String())
	}

	// A wrong key is refused.
	bad := exec.CommandContext(ctx, bin, "manager", "stats", "-addr", addr)
	bad.Env = append(os.Environ(), "MP_AUTHKEY=wrong")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "authentication") {
		t.Errorf("stats with a wrong key: %v\n%s", err, out)
	}

	// SIGTERM stops the server cleanly.
	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

// TestManagerServeKeys checks the authkey rules: a random key is made and
// printed on loopback, and a server off loopback needs one.
func TestManagerServeKeys(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	os.Unsetenv("MP_AUTHKEY")
	serve, lines := startServe(t, ctx, bin, nil, "-unix", filepath.Join(t.TempDir(), "sock"))
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "serving on unix ") || !strings.HasPrefix(lines[1], "authkey hex:") {
		t.Fatalf("serve printed %q", lines)
	}
	stats := exec.CommandContext(ctx, bin, "manager", "stats", "-unix", strings.TrimPrefix(lines[0], "serving on unix "))
	stats.Env = append(os.Environ(), "MP_AUTHKEY="+strings.TrimPrefix(lines[1], "authkey "))
	if out, err := stats.CombinedOutput(); err != nil || !strings.Contains(string(out), "objects 0") {
		t.Errorf("stats with the printed key: %v\n%s", err, out)
	}
	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()

	out, err := exec.CommandContext(ctx, bin, "manager", "serve", "-addr", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "authkey") {
		t.Errorf("serve off loopback without a key: %v\n%s", err, out)
	}

	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("a key\n"), 0o600)
	serve, lines = startServe(t, ctx, bin, []string{"MP_AUTHKEY=ignored"}, "-addr", "127.0.0.1:0", "-authkey-file", keyFile)
	stats = exec.CommandContext(ctx, bin, "manager", "stats", "-addr", strings.TrimPrefix(lines[0], "serving on tcp "), "-authkey-file", keyFile)
	if out, err := stats.CombinedOutput(); err != nil {
		t.Errorf("stats with the key file: %v\n%s", err, out)
	}
	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()
}

func TestManagerUsage(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nosuch"}, {"put", "-addr", "127.0.0.1:1"}, {"get"}, {"serve", "-addr", "x", "-unix", "y"}, {"serve", "-nosuchflag"},
	} {
		var out, errb bytes.Buffer
		if code := runManager(args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := runManager([]string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "mp manager serve") {
		t.Errorf("help: exit %d, %q", code, out.String())
	}
}

// TestManagerBench runs the manager workloads briefly and checks their
// units against py_baseline.py's.
func TestManagerBench(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runBench([]string{"-json", "-scale", "0.02", "manager_dict", "manager_value_lock"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`"name":"manager_dict"`, `"unit":"us/op"`, `"name":"manager_value_lock"`, `"unit":"k incr/s"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %s in:\n%s", want, out.String())
		}
	}
}

//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestManagerServePython: `mp manager serve -python` serves a CPython
// SyncManager client and a Go client (mp manager put/get) on the same
// named queue.
func TestManagerServePython(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := []string{"MP_AUTHKEY=hex:0123456789abcdef0123456789abcdef"}
	_, lines := startServe(t, ctx, bin, env, "-addr", "127.0.0.1:0", "-python")
	addr, ok := strings.CutPrefix(lines[0], "serving on tcp ")
	if !ok {
		t.Fatalf("serve printed %q", lines)
	}
	runMP := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := runMP("manager", "put", "-addr", addr, "-queue", "jobs", "from-go"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	host, port, _ := strings.Cut(addr, ":")
	py := exec.CommandContext(ctx, "python3", "-c", `
import sys
from multiprocessing.managers import SyncManager
class M(SyncManager): pass
M.register("get_jobs")
m = M(address=(sys.argv[1], int(sys.argv[2])), authkey=bytes.fromhex("0123456789abcdef0123456789abcdef"))
m.connect()
jobs = m.get_jobs()
assert jobs.get(timeout=10) == "from-go"
jobs.put("from-python")
d = m.dict(a=1)
assert d["a"] == 1
print("ok")
`, host, port)
	out, err := py.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	out2, err := runMP("manager", "get", "-addr", addr, "-queue", "jobs", "-timeout", "10s")
	if err != nil || strings.TrimSpace(out2) != "from-python" {
		t.Fatalf("get: %v\n%s", err, out2)
	}
}

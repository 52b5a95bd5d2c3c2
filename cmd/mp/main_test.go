//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/bench"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	mp.Main()
	benchApart = false // this is the test binary, not mp
	if os.Getenv(bench.BareEnv) != "" {
		os.Exit(0)
	}
	if url := os.Getenv(bench.FloorEnv); url != "" {
		os.Exit(bench.FloorWorker(url))
	}
	goleak.VerifyTestMain(m)
}

// The units py_baseline.py prints for the same workloads.
var units = map[string]string{
	"spawn": "ms/process", "spawn_bare_reexec": "ms/process",
	"pipe_rtt": "us/roundtrip", "pipe_bw": "GB/s",
}

func TestBenchJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runBench([]string{"-json", "-scale", "0.01", "spawn", "pipe_rtt", "pipe_bw"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r struct {
			Name  string   `json:"name"`
			Value *float64 `json:"value"`
			Unit  string   `json:"unit"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.Value == nil || *r.Value <= 0 || units[r.Name] != r.Unit {
			t.Errorf("bad result %q", line)
		}
		seen[r.Name] = true
	}
	for name := range units {
		if !seen[name] {
			t.Errorf("no %s figure in:\n%s", name, out.String())
		}
	}
}

// cluster_floor and cluster_apply_sync give their medians, and the floor's
// worker process is gone once the workload returns.
func TestBenchClusterFloor(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runBench([]string{"-json", "-scale", "0.05", "cluster_floor", "cluster_apply_sync"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r struct {
			Name  string  `json:"name"`
			Value float64 `json:"value"`
			Unit  string  `json:"unit"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.Value <= 0 || r.Unit != "us/task" {
			t.Errorf("bad result %q", line)
		}
		seen[r.Name] = true
	}
	if !seen["cluster_floor"] || !seen["cluster_apply_sync"] {
		t.Errorf("missing figures in:\n%s", out.String())
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

// children lists this process's child processes.
func children(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no /proc/self/task/*/children to list child processes (%v)", err)
	}
	var kids []string
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		kids = append(kids, strings.Fields(string(b))...)
	}
	return kids
}

func TestBenchBadInput(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"-scale", "0"}, {"-scale", "2"}, {"-nosuchflag"}} {
		var out, errb bytes.Buffer
		if code := runBench(args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

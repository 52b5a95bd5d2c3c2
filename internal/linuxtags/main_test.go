//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEveryFileRequiresLinux checks the module itself: every Go and
// assembly file requires linux, and every package has its file for
// other systems.
func TestEveryFileRequiresLinux(t *testing.T) {
	root, modPath, err := findModule()
	if err != nil {
		t.Fatal(err)
	}
	probs, err := check(root, modPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("%s %s", p.path, p.what)
	}
	if len(probs) > 0 {
		t.Log("run: go run ./internal/linuxtags")
	}
}

// writeFiles writes files (path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFix runs the fix on a module with a file of each kind: each gets the
// constraint it needs (existing ones are kept, joined with linux), each
// package its stub, and a second run finds nothing to do.
func TestFix(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":                "module example.com/m\n\ngo 1.26\n",
		"doc.go":                "// Package m does things.\npackage m\n",
		"race.go":               "//go:build race\n\npackage m\n",
		"asm.go":                "// Copyright.\n\n//go:build amd64 || arm64\n\npackage m\n",
		"tagged.go":             "//go:build linux && !race\n\npackage m\n",
		"a_amd64.s":             "#include \"textflag.h\"\n",
		"m_test.go":             "package m_test\n",
		"sub/sub.go":            "package sub\n\nimport \"fmt\"\n",
		"testdata/x.go":         "package x\n",
		".hidden/y.go":          "package y\n",
		"other/go.mod":          "module example.com/other\n",
		"other/o.go":            "package o\n",
		"sub/linuxonly.go":      "//go:build !linux\n\npackage sub\n", // an old stub
		"sub/sub_linux_test.go": "//go:build !windows\n\npackage sub\n",
	})
	probs, err := check(dir, "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 9 {
		t.Errorf("check found %d problems, want 9 (6 files, 1 old stub, 2 missing stubs)", len(probs))
		for _, p := range probs {
			t.Logf("%s %s", p.path, p.what)
		}
	}
	if _, err := fix(dir, "example.com/m"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"doc.go":                "//go:build linux\n\n// Package m does things.\npackage m\n",
		"race.go":               "//go:build linux && race\n\npackage m\n",
		"asm.go":                "// Copyright.\n\n//go:build linux && (amd64 || arm64)\n\npackage m\n",
		"tagged.go":             "//go:build linux && !race\n\npackage m\n",
		"a_amd64.s":             "//go:build linux\n\n#include \"textflag.h\"\n",
		"m_test.go":             "//go:build linux\n\npackage m_test\n",
		"sub/sub.go":            "//go:build linux\n\npackage sub\n\nimport \"fmt\"\n",
		"sub/sub_linux_test.go": "//go:build linux && !windows\n\npackage sub\n",
		"testdata/x.go":         "package x\n",
		".hidden/y.go":          "package y\n",
		"other/o.go":            "package o\n",
		"linuxonly.go":          fmt.Sprintf(rootStub, "m"),
		"sub/linuxonly.go":      "//go:build !linux\n\npackage sub\n\n// mp runs only on Linux. Off Linux, this import makes the build stop at\n// the root package, whose error says so (see linuxonly.go in the root).\nimport _ \"example.com/m\"\n",
	}
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != w {
			t.Errorf("%s after the fix:\n%s\nwant:\n%s", name, got, w)
		}
	}
	if probs, err := check(dir, "example.com/m"); err != nil || len(probs) != 0 {
		t.Errorf("check after the fix = %v, %v", probs, err)
	}
	if changed, err := fix(dir, "example.com/m"); err != nil || len(changed) != 0 {
		t.Errorf("second fix changed %v, %v", changed, err)
	}
}

// goBuildFails runs go build in dir for goos and returns its output,
// failing the test if the build succeeds.
func goBuildFails(t *testing.T, goTool, dir, goos string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, append([]string{"build", "-o", os.DevNull}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("GOOS=%s go build %s in %s succeeded", goos, strings.Join(args, " "), dir)
	}
	return string(out)
}

// checkOneMessage checks that out is the one readable error.
func checkOneMessage(t *testing.T, what, out string) {
	t.Helper()
	var errs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "#") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 1 || !strings.HasSuffix(errs[0], "linuxonly.go:8:9: undefined: mp_runs_only_on_Linux") {
		t.Errorf("%s printed:\n%s\nwant the one error \"linuxonly.go:8:9: undefined: mp_runs_only_on_Linux\"", what, out)
	}
}

// TestBuildOffLinux builds the module for darwin, and a module that
// imports mp and mp/manager: each build fails with the one error saying
// mp runs only on Linux.
func TestBuildOffLinux(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is needed: %v", err)
	}
	root, modPath, err := findModule()
	if err != nil {
		t.Fatal(err)
	}
	checkOneMessage(t, "GOOS=darwin go build ./...", goBuildFails(t, goTool, root, "darwin", "./..."))

	user := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, user, map[string]string{
		"go.mod": "module example.com/user\n\ngo 1.26\n\nrequire " + modPath + " v0.0.0\n\nreplace " + modPath + " => " + root + "\n",
		"go.sum": string(sum),
		"main.go": `package main

import (
	"` + modPath + `"
	"` + modPath + `/manager"
)

func main() {
	mp.Main()
	_ = manager.Connect
}
`,
	})
	checkOneMessage(t, "GOOS=darwin go build . (a module importing mp)", goBuildFails(t, goTool, user, "darwin", "."))
	// The same module builds on Linux: the failure is the platform's.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", os.DevNull, ".")
	cmd.Dir = user
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("GOOS=linux go build . (a module importing mp): %v\n%s", err, bytes.TrimSpace(out))
	}
}

//go:build linux

// Package pytest finds the CPython interpreters mp's interop tests run
// against: python3, which is required (CI installs it), and CPython 3.12
// and 3.13 where they are installed (as python3.12/python3.13 on PATH or
// under pyenv's versions directory), plus any listed, colon-separated, in
// MP_TEST_PYTHONS. A test runs once per interpreter through Each; a
// version that is not installed is skipped with a message saying so.
package pytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Interp is one Python interpreter.
type Interp struct {
	Path    string // what to run
	Version string // "3.11"
}

// Optional are the versions tested besides python3's when installed.
var Optional = []string{"3.12", "3.13"}

var (
	once    sync.Once
	found   []Interp
	mainErr error
)

func version(path string) (string, error) {
	out, err := exec.Command(path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	return strings.TrimSpace(string(out)), err
}

func discover() {
	seen := map[string]bool{}
	add := func(path string) {
		if v, err := version(path); err == nil && !seen[v] {
			seen[v] = true
			found = append(found, Interp{Path: path, Version: v})
		}
	}
	v, err := version("python3")
	if err != nil {
		mainErr = err
		return
	}
	seen[v] = true
	found = append(found, Interp{Path: "python3", Version: v})
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".pyenv")
	}
	for _, want := range Optional {
		add("python" + want)
		paths, _ := filepath.Glob(filepath.Join(root, "versions", want+".*", "bin", "python3"))
		for _, p := range paths {
			add(p)
		}
	}
	for _, p := range strings.Split(os.Getenv("MP_TEST_PYTHONS"), ":") {
		if p != "" {
			add(p)
		}
	}
}

// All returns the interpreters found; it fails t when python3 is missing.
func All(t testing.TB) []Interp {
	t.Helper()
	once.Do(discover)
	if mainErr != nil {
		t.Fatalf("python3 is required for these tests (CI installs it): %v", mainErr)
	}
	return found
}

// Each runs f in a subtest per interpreter: python3's version, then each
// of Optional, which is skipped with a message when not installed.
func Each(t *testing.T, f func(t *testing.T, py Interp)) {
	t.Helper()
	all := All(t)
	names := []string{all[0].Version}
	for _, v := range Optional {
		if v != all[0].Version {
			names = append(names, v)
		}
	}
	for _, v := range names {
		t.Run("py"+v, func(t *testing.T) {
			for _, py := range all {
				if py.Version == v {
					f(t, py)
					return
				}
			}
			t.Skipf("CPython %s is not installed (looked for python%s on PATH and under pyenv)", v, v)
		})
	}
	for _, py := range all[1:] {
		if py.Version != all[0].Version && !slices.Contains(Optional, py.Version) {
			t.Run("py"+py.Version, func(t *testing.T) { f(t, py) })
		}
	}
}

// Run runs script with py, stdin as its input, and returns its stdout; it
// fails t with stderr when the script fails or runs over a minute.
func Run(t testing.TB, py Interp, stdin []byte, script string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py.Path, append([]string{"-c", script}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s (%s) failed: %v\n%s", py.Path, py.Version, err, stderr.String())
	}
	return out
}

// String names py in messages.
func (py Interp) String() string { return fmt.Sprintf("%s (%s)", py.Path, py.Version) }

//go:build linux

// Command linuxtags gives every Go and assembly file of the module the
// build constraint that mp needs Linux, and every package the file that
// makes a build for another GOOS fail with one message saying so. Run it
// from anywhere inside the module after adding files:
//
//	go run ./internal/linuxtags
//
// A file with no constraint gets "//go:build linux"; one with a constraint
// that does not already require linux gets "linux && (...)". Every package
// gets a linuxonly.go, "//go:build !linux": the root package's names an
// undefined identifier that says mp runs only on Linux, and every other
// package's imports the root package, so that its build stops there with
// that one message instead of failing deep inside. The test of this
// package fails while any file lacks what this command adds.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// stubName is the name of each package's file for other systems. (Not
// "…_linux.go": that suffix alone would restrict it to Linux.)
const stubName = "linuxonly.go"

// rootStub is the root package's file for other systems; the identifier
// in it is the message the compiler prints.
const rootStub = `//go:build !linux

package %s

// mp runs only on Linux: it is built on futexes, memfd_create, SCM_RIGHTS
// and /proc/self/exe. Building it for another GOOS fails here on purpose,
// with the one error "undefined: mp_runs_only_on_Linux" (see README.md).
var _ = mp_runs_only_on_Linux
`

// otherStub is every other package's file for other systems.
const otherStub = `//go:build !linux

package %s

// mp runs only on Linux. Off Linux, this import makes the build stop at
// the root package, whose error says so (see linuxonly.go in the root).
import _ %q
`

func main() {
	root, modPath, err := findModule()
	if err != nil {
		fmt.Fprintln(os.Stderr, "linuxtags:", err)
		os.Exit(1)
	}
	changed, err := fix(root, modPath)
	for _, f := range changed {
		fmt.Println(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "linuxtags:", err)
		os.Exit(1)
	}
}

// findModule returns the directory of the go.mod above the working
// directory and the module's path.
func findModule() (dir, modPath string, err error) {
	dir, err = os.Getwd()
	if err != nil {
		return "", "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
					return dir, strings.Trim(f[1], `"`), nil
				}
			}
			return "", "", fmt.Errorf("%s/go.mod names no module", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// problem is a file (or a package's missing stub) that lacks the Linux
// constraint.
type problem struct {
	path string // relative to the module's root
	what string
	fix  func() error
}

// check returns what is missing under root, the directory of module
// modPath.
func check(root, modPath string) ([]problem, error) {
	var probs []problem
	pkgs := map[string]string{} // directory → package name (from non-test files)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, ".s") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			f, err := parser.ParseFile(token.NewFileSet(), path, data, parser.PackageClauseOnly)
			if err != nil {
				return err
			}
			if name != stubName {
				pkgs[filepath.Dir(path)] = f.Name.Name
			}
		}
		if p, ok := fileProblem(path, rel, data); !ok {
			probs = append(probs, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(pkgs))
	for dir := range pkgs {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		stub := filepath.Join(dir, stubName)
		want := []byte(fmt.Sprintf(otherStub, pkgs[dir], modPath))
		if dir == root {
			want = []byte(fmt.Sprintf(rootStub, pkgs[dir]))
		}
		what := "is missing: it stops a build off Linux"
		if have, err := os.ReadFile(stub); err == nil {
			if bytes.Equal(have, want) {
				continue
			}
			what = "is not the file that stops a build off Linux"
		}
		rel, _ := filepath.Rel(root, stub)
		probs = append(probs, problem{rel, what, func() error {
			return os.WriteFile(stub, want, 0o644)
		}})
	}
	return probs, nil
}

// fileProblem checks one file's build constraint: ok when it requires
// linux, or is a package's stub for other systems.
func fileProblem(path, rel string, data []byte) (problem, bool) {
	line, at := buildLine(data)
	if line == "" {
		return problem{rel, "has no //go:build line", func() error {
			return os.WriteFile(path, append([]byte("//go:build linux\n\n"), data...), 0o644)
		}}, false
	}
	expr, err := constraint.Parse(line)
	if err != nil {
		return problem{rel, fmt.Sprintf("has a bad //go:build line: %v", err), func() error { return err }}, false
	}
	if requiresLinux(expr) || filepath.Base(path) == stubName && expr.String() == "!linux" {
		return problem{}, true
	}
	return problem{rel, fmt.Sprintf("has %q, which does not require linux", line), func() error {
		fixed := "//go:build " + (&constraint.AndExpr{X: &constraint.TagExpr{Tag: "linux"}, Y: expr}).String()
		out := append(append(slices.Clip(data[:at]), fixed...), data[at+len(line):]...)
		return os.WriteFile(path, out, 0o644)
	}}, false
}

// buildLine returns the file's //go:build line and its offset, if it has
// one: in the comments and blank lines before the first other line.
func buildLine(data []byte) (string, int) {
	at := 0
	for at < len(data) {
		end := bytes.IndexByte(data[at:], '\n')
		if end < 0 {
			end = len(data) - at
		}
		line := strings.TrimRight(string(data[at:at+end]), "\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case constraint.IsGoBuild(line):
			return line, at
		case trimmed == "" || strings.HasPrefix(trimmed, "//"):
		default:
			return "", 0 // past the header (a /* */ header is not looked into)
		}
		at += end + 1
	}
	return "", 0
}

// requiresLinux reports whether expr is linux or a conjunction with linux
// as one of its terms.
func requiresLinux(expr constraint.Expr) bool {
	switch e := expr.(type) {
	case *constraint.TagExpr:
		return e.Tag == "linux"
	case *constraint.AndExpr:
		return requiresLinux(e.X) || requiresLinux(e.Y)
	}
	return false
}

// fix corrects everything check finds and returns the files it changed.
func fix(root, modPath string) ([]string, error) {
	probs, err := check(root, modPath)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, p := range probs {
		if err := p.fix(); err != nil {
			return changed, fmt.Errorf("%s: %w", p.path, err)
		}
		changed = append(changed, p.path)
	}
	return changed, nil
}

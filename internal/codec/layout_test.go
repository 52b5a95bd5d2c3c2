//go:build linux

package codec

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// moduleFiles returns the module's non-test Go files (paths relative to
// its root) and their contents.
func moduleFiles(t *testing.T) map[string][]byte {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	files := map[string][]byte{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d Go files under %s", len(files), root)
	}
	return files
}

func inCodec(path string) bool { return strings.HasPrefix(path, "internal/codec/") }

// TestOptionsOnlyHere checks that no file outside this package builds CBOR
// options: one set of options with their limits, whatever layer encodes.
func TestOptionsOnlyHere(t *testing.T) {
	builders := []string{
		"cbor.EncOptions{", "cbor.DecOptions{", ".EncMode(", ".DecMode(",
		".UserBufferEncMode(", "cbor.CoreDetEncOptions(", "cbor.PreferredUnsortedEncOptions(",
		"cbor.CTAP2EncOptions(", "cbor.CanonicalEncOptions(",
	}
	for path, b := range moduleFiles(t) {
		if inCodec(path) {
			continue
		}
		for _, s := range builders {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s builds CBOR options (%s): they belong in internal/codec", path, s)
			}
		}
	}
}

// TestTagsDefinedOnce checks that each CBOR tag number mp uses appears in
// the module's code once, in this package's table: no layer defines a
// tag of its own, or spells one out instead of naming it.
func TestTagsDefinedOnce(t *testing.T) {
	table := map[int]string{HandleTag: "HandleTag", EnvelopeTag: "EnvelopeTag", TokenTag: "TokenTag"}
	if len(table) != 3 {
		t.Fatal("two tags share a number")
	}
	// mp's tags are in 27500-27599; any number there is one of them.
	literal := regexp.MustCompile(`\b275\d\d\b`)
	count := map[int][]string{}
	for path, b := range moduleFiles(t) {
		for _, m := range literal.FindAll(b, -1) {
			n, _ := strconv.Atoi(string(m))
			count[n] = append(count[n], path)
		}
	}
	for n, paths := range count {
		if _, ok := table[n]; !ok {
			t.Errorf("tag number %d appears in %v but is not in internal/codec's table", n, paths)
		}
	}
	for n, name := range table {
		if paths := count[n]; len(paths) != 1 || paths[0] != "internal/codec/codec.go" {
			t.Errorf("%s (%d) appears in %v, want once, in internal/codec/codec.go", name, n, paths)
		}
	}
}

// TestNoNetBelowRoot checks the layering with go list: the root package
// does not depend on package net, and this package depends on no mp
// package above it (it may import only other internal packages).
func TestNoNetBelowRoot(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	deps := func(pkg string) []string {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	root := deps("github.com/go-mp/mp")
	if len(root) < 20 {
		t.Fatalf("go list -deps of the root package listed only %v", root)
	}
	for _, p := range root {
		if p == "net" {
			t.Error("the root package depends on package net")
		}
	}
	for _, p := range deps("github.com/go-mp/mp/internal/codec") {
		if strings.HasPrefix(p, "github.com/go-mp/mp") && !strings.HasPrefix(p, "github.com/go-mp/mp/internal/") {
			t.Errorf("internal/codec depends on %s, above it", p)
		}
	}
}

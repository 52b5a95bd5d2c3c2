//go:build linux

package manager

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthkeyFileWarning: a key file that its group or others may read
// gets one warning per path, however often it is read; a private one
// gets none. The key is read either way.
func TestAuthkeyFileWarning(t *testing.T) {
	var out bytes.Buffer
	old := warnings
	warnings = &out
	defer func() { warnings = old }()

	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	exposed := filepath.Join(dir, "exposed")
	for path, mode := range map[string]os.FileMode{private: 0o600, exposed: 0o644} {
		if err := os.WriteFile(path, []byte("a key\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	for range 2 {
		for _, path := range []string{private, exposed} {
			if key, err := ReadAuthkeyFile(path); err != nil || string(key) != "a key" {
				t.Fatalf("%s: %q, %v", path, key, err)
			}
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], exposed) || !strings.Contains(lines[0], "0644") {
		t.Fatalf("warnings: %q", out.String())
	}
}

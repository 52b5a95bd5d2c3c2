//go:build linux

package mp

import "testing"

// TestReadOnlyFileMapping: only private, non-writable mappings of a file
// are candidates for dropFilePages; the lines of a mapping's details and
// malformed headers are not.
func TestReadOnlyFileMapping(t *testing.T) {
	for _, c := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-00a29000 r-xp 00000000 fe:00 10135534   /tmp/mp.test", 0x400000, 0xa29000, true},
		{"00a29000-01108000 r--p 00629000 fe:00 10135534   /usr/lib/x86_64-linux-gnu/libc.so.6", 0xa29000, 0x1108000, true},
		{"01108000-01132000 rw-p 00d08000 fe:00 10135534   /tmp/mp.test", 0, 0, false}, // writable
		{"7f0000000000-7f0000001000 r--s 00000000 00:01 42   /dev/shm/x", 0, 0, false}, // shared
		{"1ebf38c00000-1ebf39000000 rw-p 00000000 00:00 0", 0, 0, false},               // anonymous
		{"7ffd1f4bb000-7ffd1f4bd000 r-xp 00000000 00:00 0   [vdso]", 0, 0, false},
		{"00a29000-00a29000 r--p 00000000 fe:00 1   /tmp/empty", 0, 0, false},
		{"zz-00a29000 r--p 00000000 fe:00 1   /tmp/bad", 0, 0, false},
		{"Rss:                 628 kB", 0, 0, false},
		{"VmFlags: rd ex mr mw me sd", 0, 0, false},
	} {
		start, end, ok := readOnlyFileMapping([]byte(c.line))
		if start != c.start || end != c.end || ok != c.ok {
			t.Errorf("readOnlyFileMapping(%q) = %#x, %#x, %v; want %#x, %#x, %v", c.line, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

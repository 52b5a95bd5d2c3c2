//go:build linux

package mp

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dropFilePages unmaps the pages of this process's read-only file
// mappings (the binary's code and constant data, and those of shared
// libraries) that nothing here has written, as a spare does before it
// says it waits. Starting the process faulted in most of them (the
// kernel maps neighbours of each page that faults too): 9 MB of a 20 MB
// test binary, which the process's exit must then unmap page by page on
// the way from the target's return to its reaping (see [SetSpares] for
// what that costs). The pages stay in the page cache: what a target
// touches is faulted in again, cheaply.
//
// Only mappings that are private, not writable and hold no page of
// their own (Anonymous: 0 kB in /proc/self/smaps) are dropped: for those
// the file's page is exactly what was mapped, so dropping loses nothing
// (a relocated read-only segment, written by the dynamic loader before
// it was made read-only, has pages of its own and is left alone). Any
// failure just leaves the pages mapped.
func dropFilePages() {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	defer f.Close()
	var drop [][2]uintptr
	var cur [2]uintptr
	candidate := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if start, end, ok := readOnlyFileMapping(line); ok {
			cur, candidate = [2]uintptr{start, end}, true
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok && candidate {
			if strings.TrimSpace(string(rest)) == "0 kB" {
				drop = append(drop, cur)
			}
			candidate = false
			continue
		}
		if isMappingHeader(line) {
			candidate = false
		}
	}
	if sc.Err() != nil {
		return
	}
	for _, r := range drop {
		unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// isMappingHeader reports whether line of /proc/self/smaps starts a
// mapping ("start-end perms offset dev inode [path]").
func isMappingHeader(line []byte) bool {
	f := bytes.Fields(line)
	return len(f) >= 5 && bytes.IndexByte(f[0], '-') > 0 && !bytes.HasSuffix(f[0], []byte(":"))
}

// readOnlyFileMapping parses a mapping header of /proc/self/smaps and
// reports its range if it maps a file privately and without write
// permission.
func readOnlyFileMapping(line []byte) (start, end uintptr, ok bool) {
	f := strings.Fields(string(line))
	if len(f) < 6 || !strings.HasPrefix(f[5], "/") {
		return 0, 0, false // anonymous, or [vdso], [stack] and the like
	}
	perms := f[1]
	if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}

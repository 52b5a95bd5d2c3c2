//go:build linux && !amd64 && !arm64

package goid

import (
	"bytes"
	"runtime"
	"strconv"
)

// get parses the goroutine id from the first line of a stack trace: slow
// (a microsecond or so), but portable.
func get() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

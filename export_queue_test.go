//go:build linux

package mp

import "golang.org/x/sys/unix"

// QueueBackedBytesForTest returns how many bytes of q's shared memory are
// backed by memory (not holes), so tests can see chunks faulted in or given
// back.
func QueueBackedBytesForTest[T any](q *Queue[T]) int64 {
	var st unix.Stat_t
	if err := unix.Fstat(q.c.s.seg.FD(), &st); err != nil {
		panic(err)
	}
	return st.Blocks * 512
}

// QueueGetsWaitingForTest returns how many Gets wait for an item of q,
// asleep or about to be: each has given back what memory it gives when it
// finds q empty.
func QueueGetsWaitingForTest[T any](q *Queue[T]) int { return int(q.c.consW.Load()) }

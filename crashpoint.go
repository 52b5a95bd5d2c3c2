//go:build linux

package mp

// crashPoint, when not nil, is called at the named points inside operations
// whose windows for a crash are a few instructions wide, too narrow to hit
// from outside. Only tests set it (in a child, through an export_test
// file), to stop the child exactly there and kill it; in a program it
// stays nil and costs one load.
var crashPoint func(where string)

// The points crashPoint is called at.
const (
	// Condition.Wait has retaken the lock after a notification, which it
	// has not yet consumed.
	crashWaitRetaken = "condition.wait.retaken"
	// Queue.Put has written its item into the stream but not published it.
	crashPutWritten = "queue.put.written"
	// Queue.Put has published its item but not yet returned.
	crashPutCommitted = "queue.put.committed"
)

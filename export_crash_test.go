//go:build linux

package mp

// SetCrashPointForTest has fn called at each crash point (see crashPoint),
// so that a test child can stop itself exactly there.
func SetCrashPointForTest(fn func(where string)) { crashPoint = fn }

// The crash points, for tests.
const (
	CrashWaitRetaken  = crashWaitRetaken
	CrashPutWritten   = crashPutWritten
	CrashPutCommitted = crashPutCommitted
)

// LockHasSleepersForTest reports whether someone sleeps waiting for lock,
// a *Lock or *RLock: so a test knows that a Condition's notified waiter is
// blocked retaking it.
func LockHasSleepersForTest(lock SharedLock) bool {
	switch l := lock.(type) {
	case *Lock:
		return l.m.word.Load()&waitersBit != 0
	case *RLock:
		return l.m.word.Load()&waitersBit != 0
	}
	return false
}

//go:build linux

package mp

// IdleSparePids lists the pids of the idle spares, oldest first: the
// first is the one the next Start takes.
func IdleSparePids() []int {
	spares.Lock()
	defer spares.Unlock()
	pids := make([]int, len(spares.idle))
	for i, s := range spares.idle {
		pids[i] = s.osp.Pid
	}
	return pids
}

// SetTestHookFill makes f run in the filler before it starts each spare;
// nil removes it.
func SetTestHookFill(f func()) {
	if f == nil {
		testHookFill.Store(nil)
		return
	}
	testHookFill.Store(&f)
}

// SetTestHookSpareReaped makes f run in a spare's watcher once it has
// reaped the spare, before it looks whether the spare was idle; nil
// removes it.
func SetTestHookSpareReaped(f func(pid int)) {
	if f == nil {
		testHookSpareReaped.Store(nil)
		return
	}
	testHookSpareReaped.Store(&f)
}

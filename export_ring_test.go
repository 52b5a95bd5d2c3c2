//go:build linux

package mp

// SetWorkerLinkHookForTest has f given each pool worker's socket and ring
// memory as the worker starts (see testHookWorkerLink). Call it at init,
// so that it is set in the workers too.
func SetWorkerLinkHookForTest(f func(sock *Conn, mem []byte)) { testHookWorkerLink = f }

// SetPoolReadHookForTest has f run in each worker's reader before each
// receive, with the worker's pid; nil removes it.
func SetPoolReadHookForTest(f func(pid int)) {
	if f == nil {
		testHookPoolRead.Store(nil)
		return
	}
	testHookPoolRead.Store(&f)
}

// PoolRingForTest returns the ring memory of p's worker pid, or nil. It
// is unmapped once the pool has seen the worker lost: read it only before.
func PoolRingForTest(p *Pool, pid int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		if w.stats.Pid == pid {
			return w.ringMem
		}
	}
	return nil
}

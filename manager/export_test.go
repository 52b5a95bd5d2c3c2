//go:build linux

package manager

// OpenConns returns the number of connections m's pool has open.
func OpenConns(m *Manager) int {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return len(m.c.all)
}

// SetTestHookSent makes f run in this process each time a proxy has sent
// a request, before it reads the reply.
func SetTestHookSent(f func()) { testHookSent.Store(&f) }

// Hello is a valid hello request of this protocol version.
var Hello = fuzzHello

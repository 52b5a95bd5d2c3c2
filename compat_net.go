package mp

import "net"

// newConn wraps a *net.TCPConn or *net.UnixConn. Temporary: the Listener
// and Client move to package connection.
func newConn(nc net.Conn, readable, writable bool) *Conn {
	c, err := NewConn(nc.(Transport), readable, writable)
	if err != nil {
		nc.Close()
		return nil
	}
	return c
}

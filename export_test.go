package mp

import "net"

// RawSocketForTest exposes a Conn's socket so tests can write bad frames.
func RawSocketForTest(c *Conn) net.Conn { return c.nc }

// EncodeForTest encodes v with the codec but outside mp's sending path.
func EncodeForTest(v any) ([]byte, error) { return encMode.Marshal(v) }

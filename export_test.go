package mp

import "io"

// RawSocketForTest exposes a Conn's socket so tests can write bad frames.
func RawSocketForTest(c *Conn) io.Writer { return c.t.(io.Writer) }

// EncodeForTest encodes v with the codec but outside mp's sending path.
func EncodeForTest(v any) ([]byte, error) { return encMode.Marshal(v) }

//go:build linux

// Package connhook lets package connection give an mp.Conn another codec
// for Send and Recv (CPython's pickle, for connection.WithPickle) without
// a public method on mp.Conn: package mp installs SetCodec, which package
// connection calls on the Conns it makes.
package connhook

// Codec encodes the values of Send into one message each, and decodes a
// message into the destination of Recv.
type Codec interface {
	Encode(v any) ([]byte, error)
	Decode(msg []byte, dst any) error
}

// SetCodec makes conn, an *mp.Conn no other goroutine uses yet, send and
// receive with c instead of mp's own codec. Package mp sets it when it is
// initialised.
var SetCodec func(conn any, c Codec)

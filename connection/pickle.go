//go:build linux

package connection

import (
	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/connhook"
	"github.com/go-mp/mp/internal/pickle"
)

// An Option changes the connections that Listen, Dial and Client make.
type Option func(*options)

type options struct {
	pickle bool
}

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithPickle makes the connections' Send and Recv speak CPython's pickle,
// as multiprocessing.connection.Connection.send and recv do, so that a Go
// program exchanges values with a Python one (3.11 to 3.13):
//
//	Python         Go Send takes                 Go Recv gives (into any)
//	------         -------------                 -----------------------
//	None           nil, a nil pointer/slice/map  nil
//	bool           bool                          bool
//	int            intN, uintN, *big.Int         int64; *big.Int beyond int64
//	float          float32, float64              float64
//	str            string (UTF-8)                string
//	bytes          ogórek.Bytes                  ogórek.Bytes
//	bytearray      []byte                        []byte
//	list           []T                           []any
//	tuple          ogórek.Tuple                  ogórek.Tuple
//	dict           *Dict, map[K]V, a struct      *Dict
//	set            Set                           Set
//	frozenset      FrozenSet                     FrozenSet
//
// (ogórek is github.com/kisielk/og-rek.) A dict keeps its order both
// ways, as CPython's dicts do: Recv gives a *Dict, whose pairs are in the
// order the Python dict held them, and Send writes a Dict's pairs in its
// order, a struct's fields in their order, and a Go map's pairs in no
// particular order (Go maps have none). Recv gave an ogórek.Dict, which
// has no order, before mp kept it; Send still takes one. A struct travels
// as a dict of its exported fields, keyed by name or by a `pickle:"key"`
// tag ("-" leaves a field out). Recv also decodes into typed destinations — a struct from a
// dict, map[string]int, []int from a list, tuple or set, map[K]struct{}
// from a set, intN with an overflow check, ... — and a value that does not
// fit is a *MismatchError; Recv into *any gives the values above. A
// list or dict the pickle shares (Python's [[0] * 3] * 2) is shared in
// what Recv makes too, as in Python: a slice or map of a typed
// destination is filled once and appears wherever the pickle refers to
// it.
//
// What Recv decodes is never executed: a pickle naming any class or
// function but the builtin set, frozenset, bytearray and bytes (and
// _codecs.encode, Python's protocol 0-2 spelling of bytes) is refused with
// a *ForbiddenError, before anything is built; one beyond the limits (64
// MiB, nesting deeper than 1000, more than 2^20 memo entries, lengths
// beyond the message, 64 Mi values met by walking it) with a *LimitError,
// and a malformed one with a *FormatError, using memory proportional to
// the message. The connection stays usable after any of them: the message
// was read whole. Send writes protocol 5 (CPython 3.8 and later read it);
// a value with no Python counterpart fails with an *EncodeError and
// nothing is sent.
//
// The option holds for the Conn that Dial or Accept returns; a Conn sent
// to another process over a Conn decodes with mp's own codec there.
// SendBytes and RecvBytes are unchanged (CPython's send_bytes and
// recv_bytes).
func WithPickle() Option { return func(o *options) { o.pickle = true } }

// The Python types with no Go counterpart, and the errors of WithPickle's
// Send and Recv, for type switches and errors.As.
type (
	// Set is a Python set: its elements in the order the pickle holds them.
	Set = pickle.Set
	// FrozenSet is a Python frozenset, as Set.
	FrozenSet = pickle.FrozenSet
	// Dict is a Python dict: its pairs in the order they were first
	// set, as in CPython, looked up by key as Python compares keys (1,
	// 1.0 and True are one key; None in a key is ogórek.None{}). Get,
	// Set, Len and All use it; the zero value is an empty dict, ready to
	// use.
	Dict = pickle.Dict
	// ForbiddenError is a pickle naming a class or function that is not
	// allowed (Module, Name), or reaching outside the message (a
	// persistent id, the extension registry, an out-of-band buffer).
	ForbiddenError = pickle.ForbiddenError
	// LimitError is a pickle beyond a limit (What: "size", "depth",
	// "memo", "values", "length", "digits").
	LimitError = pickle.LimitError
	// FormatError is a malformed pickle.
	FormatError = pickle.FormatError
	// MismatchError is a received value that does not fit Recv's
	// destination.
	MismatchError = pickle.MismatchError
	// EncodeError is a value Send cannot pickle.
	EncodeError = pickle.EncodeError
)

// pickleCodec is the codec WithPickle gives a Conn: the default limits and
// allow-list of package pickle.
type pickleCodec struct{}

func (pickleCodec) Encode(v any) ([]byte, error) { return pickle.Encode(v, pickle.Options{}) }

func (pickleCodec) Decode(msg []byte, dst any) error {
	v, err := pickle.Decode(msg, pickle.Options{})
	if err != nil {
		return err
	}
	return pickle.Into(v, dst)
}

// apply gives c the codec the options ask for.
func (o options) apply(c *mp.Conn) *mp.Conn {
	if o.pickle {
		connhook.SetCodec(c, pickleCodec{})
	}
	return c
}

//go:build linux

// Package codec is the one home of how mp's values become bytes and back:
// the CBOR options and their decode limits, the table of CBOR tag numbers
// mp uses, the messages that carry descriptors (handles) beside them, the
// raw encoding of fixed-size types, and a small reader and writer of CBOR
// items for wire formats written by hand (the manager's protocol, the
// byte strings a Queue copies straight into shared memory).
//
// It sits below the root package: the types that carry handles (Conn,
// Lock, Queue...) live there and encode themselves through EncodeHandle
// and DecodeHandle; the root package names them to this package with
// SetHandleMarker when it is initialised.
package codec

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR tag numbers mp uses, all in one table so that none is used
// twice. They are in the range of first-come-first-served tags (RFC 8949
// section 9.2) and unregistered.
const (
	// HandleTag marks an encoded handle: a value (Conn, ...) whose
	// descriptor travels beside the message with SCM_RIGHTS. Its content is
	// [kind, index, flags]: index counts the descriptors of the message.
	HandleTag = 27501

	// EnvelopeTag, as the first item of a message, says how many
	// descriptors travel with it: Tag(EnvelopeTag, n) followed by the value.
	EnvelopeTag = 27502

	// TokenTag marks an encoded manager proxy: Tag(TokenTag, [network,
	// address, instance, id, kind]).
	TokenTag = 27510
)

// MaxDepth is the deepest nesting of arrays, maps and tags the decoder
// accepts, and the hand-written reader (Skip) too.
const MaxDepth = 64

// The decode limits, safe against hostile input: an encoded item cannot
// make the decoder allocate more than its length allows past these, nest
// deeper than MaxDepth, or use indefinite lengths.
const (
	maxArrayElements = 1 << 28
	maxMapPairs      = 1 << 24
)

// The encoders and the decoder. enc is mp's codec; det encodes
// deterministically (sorted map keys, shortest numbers), so that equal
// values are equal bytes, as the manager needs to compare values and keys
// as bytes. Both decode with dec.
var (
	enc cbor.UserBufferEncMode
	det cbor.UserBufferEncMode
	dec cbor.DecMode
)

func init() {
	var err error
	if enc, err = (cbor.EncOptions{Time: cbor.TimeRFC3339Nano}).UserBufferEncMode(); err != nil {
		panic(err)
	}
	detOpts := cbor.CoreDetEncOptions()
	detOpts.Time = cbor.TimeRFC3339Nano
	if det, err = detOpts.UserBufferEncMode(); err != nil {
		panic(err)
	}
	dec, err = cbor.DecOptions{
		MaxNestedLevels:  MaxDepth,
		MaxArrayElements: maxArrayElements,
		MaxMapPairs:      maxMapPairs,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v into memory of its own. A handle inside v fails with
// ErrNoSession (see EncodeMessage).
func Marshal(v any) ([]byte, error) {
	if b, ok := appendFast(nil, v); ok {
		return b, nil
	}
	return enc.Marshal(v)
}

// MarshalToBuffer appends the encoding of v to buf.
func MarshalToBuffer(v any, buf *bytes.Buffer) error {
	if b, ok := appendFast(buf.AvailableBuffer(), v); ok {
		buf.Write(b)
		return nil
	}
	return enc.MarshalToBuffer(v, buf)
}

// Unmarshal decodes the one item data holds into v, a pointer.
func Unmarshal(data []byte, v any) error {
	if decodeFast(data, v) {
		return nil
	}
	return dec.Unmarshal(data, v)
}

// DetMarshal encodes v deterministically: equal values give equal bytes.
func DetMarshal(v any) ([]byte, error) { return det.Marshal(v) }

// DetMarshalToBuffer appends the deterministic encoding of v to buf.
func DetMarshalToBuffer(v any, buf *bytes.Buffer) error { return det.MarshalToBuffer(v, buf) }

// EncodeError reports a value the codec cannot encode.
type EncodeError struct {
	Type string // the value's type, as %T prints it
	Err  error
}

func (e *EncodeError) Error() string { return "mp: encode " + e.Type + ": " + e.Err.Error() }
func (e *EncodeError) Unwrap() error { return e.Err }

func encodeError(v any, err error) error { return &EncodeError{Type: fmt.Sprintf("%T", v), Err: err} }

// ErrNoSession is returned when a handle is marshalled outside mp's own
// sending path (for example with cbor.Marshal directly, or as a queue
// item).
var ErrNoSession = errors.New("mp: handles (Conn, ...) can only be sent through mp")

// ErrItemHandles is returned for a queue item (or a pool task's result)
// that holds a handle: such values do not go through a Conn, so their
// descriptors could not travel. The root package exports it as
// ErrQueueHandles.
var ErrItemHandles = errors.New("mp: queue items cannot hold handles (Conn, Lock, ...)")

// ErrArgHandles is returned for a pool task's argument that holds a
// handle.
var ErrArgHandles = errors.New("mp: pool task arguments cannot hold handles (Conn, Lock, ...)")

// EncodeItem appends the encoding of v, a queue item or a task's result,
// to buf. Items never carry handles, so this skips the handle session
// (and its lock) that a message needs: a handle inside fails with
// ErrItemHandles.
func EncodeItem(buf *bytes.Buffer, v any) error {
	if err := MarshalToBuffer(v, buf); err != nil {
		if errors.Is(err, ErrNoSession) {
			return ErrItemHandles
		}
		return encodeError(v, err)
	}
	return nil
}

// EncodeArgTo appends the encoding of a pool task's argument to buf; a
// handle inside fails with ErrArgHandles.
func EncodeArgTo(buf *bytes.Buffer, v any) error {
	if err := EncodeItem(buf, v); err != nil {
		if err == ErrItemHandles {
			return ErrArgHandles
		}
		return err
	}
	return nil
}

// EncodeArg encodes a pool task's argument into memory of its own.
func EncodeArg(v any) ([]byte, error) {
	b, err := Marshal(v)
	if err != nil {
		if errors.Is(err, ErrNoSession) {
			return nil, ErrArgHandles
		}
		return nil, encodeError(v, err)
	}
	return b, nil
}

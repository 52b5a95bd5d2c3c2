//go:build linux

package mp

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"
)

// The default codec is CBOR with decode limits, safe against hostile input.
var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  64,
		MaxArrayElements: 1 << 28,
		MaxMapPairs:      1 << 24,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// encodeError reports a value the codec cannot encode.
type encodeError struct {
	typ string
	err error
}

func (e *encodeError) Error() string { return "mp: encode " + e.typ + ": " + e.err.Error() }
func (e *encodeError) Unwrap() error { return e.err }

// handleTag marks an encoded handle: a value (Conn, ...) whose descriptor
// travels beside the message with SCM_RIGHTS. Its content is
// [kind, index, flags]: index counts the descriptors of the message.
const handleTag = 27501

// envelopeTag, as the first item of a message, says how many descriptors
// travel with it: Tag(envelopeTag, n) followed by the value.
const envelopeTag = 27502

// errNoSession is returned when a handle is marshalled outside mp's own
// sending path (for example with cbor.Marshal directly).
var errNoSession = errors.New("mp: handles (Conn, ...) can only be sent through mp")

// An encodeSession collects the descriptors of the handles in one message.
type encodeSession struct {
	fds []int
}

// A decodeSession hands out the descriptors received with one message.
type decodeSession struct {
	fds     []int
	claimed []bool
}

// The session for the message being encoded or decoded. Handles' CBOR
// methods have no other way to reach it, so encoding and decoding of
// messages hold these locks.
var (
	encMu   sync.Mutex
	encSess *encodeSession
	decMu   sync.Mutex
	decSess *decodeSession
)

// marshal encodes v and returns duplicates of the descriptors of the
// handles it holds, to be sent with the message and then closed with
// closeFDs. Duplicating them keeps the message right even if a handle is
// closed before the message leaves.
func marshal(v any) ([]byte, []int, error) {
	if handleFree(reflect.TypeOf(v), false) {
		b, err := encMode.Marshal(v)
		if err != nil {
			return nil, nil, &encodeError{typ: fmt.Sprintf("%T", v), err: err}
		}
		return b, nil, nil
	}
	encMu.Lock()
	s := encodeSession{}
	encSess = &s
	b, err := encMode.Marshal(v)
	encSess = nil
	encMu.Unlock()
	if err != nil {
		closeFDs(s.fds)
		return nil, nil, &encodeError{typ: fmt.Sprintf("%T", v), err: err}
	}
	if len(s.fds) > 0 {
		env, err := encMode.Marshal(cbor.Tag{Number: envelopeTag, Content: len(s.fds)})
		if err != nil {
			closeFDs(s.fds)
			return nil, nil, err
		}
		b = append(env, b...)
	}
	return b, s.fds, nil
}

// unmarshal decodes data into v, handing the received descriptors fds to
// the handles inside it. It returns how many descriptors the message
// carried; those the value did not claim are closed.
func unmarshal(data []byte, fds []int, v any) (used int, err error) {
	n, rest, err := splitEnvelope(data)
	if err != nil {
		return 0, err
	}
	if n == 0 && handleFree(reflect.TypeOf(v), true) {
		if err := decMode.Unmarshal(rest, v); err != nil {
			return 0, fmt.Errorf("mp: decode into %T: %w", v, err)
		}
		return 0, nil
	}
	if n > len(fds) {
		return 0, fmt.Errorf("mp: message carries %d descriptors, %d received", n, len(fds))
	}
	s := decodeSession{fds: fds[:n], claimed: make([]bool, n)}
	decMu.Lock()
	decSess = &s
	err = decMode.Unmarshal(rest, v)
	decSess = nil
	decMu.Unlock()
	for i, c := range s.claimed {
		if !c {
			closeFD(s.fds[i])
		}
	}
	if err != nil {
		return n, fmt.Errorf("mp: decode into %T: %w", v, err)
	}
	return n, nil
}

// splitEnvelope strips a leading descriptor-count envelope.
func splitEnvelope(data []byte) (int, []byte, error) {
	// Tag 27502 encodes as 0xd9 0x6b 0x6e; a fast check avoids decoding.
	if len(data) < 3 || data[0] != 0xd9 || data[1] != 0x6b || data[2] != 0x6e {
		return 0, data, nil
	}
	var tag cbor.RawTag
	rest, err := decMode.UnmarshalFirst(data, &tag)
	if err != nil {
		return 0, nil, fmt.Errorf("mp: bad message envelope: %w", err)
	}
	var n uint16
	if err := decMode.Unmarshal(tag.Content, &n); err != nil {
		return 0, nil, fmt.Errorf("mp: bad message envelope: %w", err)
	}
	return int(n), rest, nil
}

// exportFD records fd as part of the message being encoded and returns its
// index in the message.
func exportFD(fd int) (int, error) {
	if encSess == nil {
		return 0, errNoSession
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("dup", err)
	}
	encSess.fds = append(encSess.fds, dup)
	return len(encSess.fds) - 1, nil
}

// importFD takes ownership of descriptor i of the message being decoded.
func importFD(i int) (int, error) {
	s := decSess
	if s == nil {
		return -1, errNoSession
	}
	if i < 0 || i >= len(s.fds) || s.claimed[i] {
		return -1, fmt.Errorf("mp: message names descriptor %d it does not carry", i)
	}
	s.claimed[i] = true
	return s.fds[i], nil
}

// handle is the encoded form of a Conn or other descriptor-backed value.
type handle struct {
	_     struct{} `cbor:",toarray"`
	Kind  uint8
	Index int
	Flags uint32
}

const (
	handleConn   uint8 = iota + 1
	handleShared       // a shared object; Flags holds its kind
)

func encodeHandle(kind uint8, fd int, flags uint32) ([]byte, error) {
	i, err := exportFD(fd)
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(cbor.Tag{Number: handleTag, Content: handle{Kind: kind, Index: i, Flags: flags}})
}

// decodeHandle returns the descriptor of an encoded handle, owned by the
// caller.
func decodeHandle(data []byte, kind uint8) (int, uint32, error) {
	var tag cbor.RawTag
	if err := decMode.Unmarshal(data, &tag); err != nil {
		return -1, 0, err
	}
	var h handle
	if tag.Number != handleTag {
		return -1, 0, fmt.Errorf("mp: expected a handle, got tag %d", tag.Number)
	}
	if err := decMode.Unmarshal(tag.Content, &h); err != nil {
		return -1, 0, err
	}
	if h.Kind != kind {
		return -1, 0, fmt.Errorf("mp: handle of kind %d where kind %d expected", h.Kind, kind)
	}
	fd, err := importFD(h.Index)
	return fd, h.Flags, err
}

func closeFD(fd int) { unix.Close(fd) }

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

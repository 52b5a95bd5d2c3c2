//go:build linux

package codec

import (
	"fmt"
	"os"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"
)

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
// messages that may hold handles hold these locks.
var (
	encMu   sync.Mutex
	encSess *encodeSession
	decMu   sync.Mutex
	decSess *decodeSession
)

// EncodeMessage encodes v and returns duplicates of the descriptors of
// the handles it holds, to be sent with the message and then closed with
// CloseFDs. Duplicating them keeps the message right even if a handle is
// closed before the message leaves.
func EncodeMessage(v any) ([]byte, []int, error) {
	if b, ok := appendFast(nil, v); ok {
		return b, nil, nil
	}
	if HandleFree(reflect.TypeOf(v), false) {
		b, err := enc.Marshal(v)
		if err != nil {
			return nil, nil, encodeError(v, err)
		}
		return b, nil, nil
	}
	encMu.Lock()
	s := encodeSession{}
	encSess = &s
	b, err := enc.Marshal(v)
	encSess = nil
	encMu.Unlock()
	if err != nil {
		CloseFDs(s.fds)
		return nil, nil, encodeError(v, err)
	}
	if len(s.fds) > 0 {
		env, err := enc.Marshal(cbor.Tag{Number: EnvelopeTag, Content: len(s.fds)})
		if err != nil {
			CloseFDs(s.fds)
			return nil, nil, err
		}
		b = append(env, b...)
	}
	return b, s.fds, nil
}

// DecodeMessage decodes data into v, handing the received descriptors fds
// to the handles inside it. It returns how many descriptors the message
// carried; those the value did not claim are closed.
func DecodeMessage(data []byte, fds []int, v any) (used int, err error) {
	n, rest, err := splitEnvelope(data)
	if err != nil {
		return 0, err
	}
	if n == 0 && decodeFast(rest, v) {
		return 0, nil
	}
	if n == 0 && HandleFree(reflect.TypeOf(v), true) {
		if err := dec.Unmarshal(rest, v); err != nil {
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
	err = dec.Unmarshal(rest, v)
	decSess = nil
	decMu.Unlock()
	for i, c := range s.claimed {
		if !c {
			unix.Close(s.fds[i])
		}
	}
	if err != nil {
		return n, fmt.Errorf("mp: decode into %T: %w", v, err)
	}
	return n, nil
}

// envelopePrefix is how Tag(EnvelopeTag, ...)'s head encodes.
var envelopePrefix = AppendHead(nil, MajorTag, EnvelopeTag)

// splitEnvelope strips a leading descriptor-count envelope.
func splitEnvelope(data []byte) (int, []byte, error) {
	// A fast check of the tag's head avoids decoding.
	if len(data) < len(envelopePrefix) || string(data[:len(envelopePrefix)]) != string(envelopePrefix) {
		return 0, data, nil
	}
	var tag cbor.RawTag
	rest, err := dec.UnmarshalFirst(data, &tag)
	if err != nil {
		return 0, nil, fmt.Errorf("mp: bad message envelope: %w", err)
	}
	var n uint16
	if err := dec.Unmarshal(tag.Content, &n); err != nil {
		return 0, nil, fmt.Errorf("mp: bad message envelope: %w", err)
	}
	return int(n), rest, nil
}

// exportFD records fd as part of the message being encoded and returns its
// index in the message.
func exportFD(fd int) (int, error) {
	if encSess == nil {
		return 0, ErrNoSession
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
		return -1, ErrNoSession
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

// The kinds of handles.
const (
	HandleConn   uint8 = iota + 1
	HandleShared       // a shared object; Flags holds its kind
)

// EncodeHandle encodes a handle of kind kind whose descriptor is fd, for
// a handle's MarshalCBOR: the descriptor joins the message being encoded
// by EncodeMessage (outside one it fails with ErrNoSession).
func EncodeHandle(kind uint8, fd int, flags uint32) ([]byte, error) {
	i, err := exportFD(fd)
	if err != nil {
		return nil, err
	}
	return enc.Marshal(cbor.Tag{Number: HandleTag, Content: handle{Kind: kind, Index: i, Flags: flags}})
}

// DecodeHandle returns the descriptor of an encoded handle, owned by the
// caller, and its flags, for a handle's UnmarshalCBOR inside
// DecodeMessage.
func DecodeHandle(data []byte, kind uint8) (int, uint32, error) {
	var tag cbor.RawTag
	if err := dec.Unmarshal(data, &tag); err != nil {
		return -1, 0, err
	}
	var h handle
	if tag.Number != HandleTag {
		return -1, 0, fmt.Errorf("mp: expected a handle, got tag %d", tag.Number)
	}
	if err := dec.Unmarshal(tag.Content, &h); err != nil {
		return -1, 0, err
	}
	if h.Kind != kind {
		return -1, 0, fmt.Errorf("mp: handle of kind %d where kind %d expected", h.Kind, kind)
	}
	fd, err := importFD(h.Index)
	return fd, h.Flags, err
}

// CloseFDs closes the descriptors EncodeMessage returned.
func CloseFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

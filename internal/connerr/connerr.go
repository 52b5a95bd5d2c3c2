//go:build linux

// Package connerr holds the errors that a connection returns, whichever
// carries it: the root package's Conn (a socket) and ringconn (rings in
// shared memory, below the root package) return the same values, which
// the root package exports, so that errors.Is matches either.
package connerr

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by operations on a closed connection (mp.ErrClosed).
	ErrClosed = errors.New("mp: use of closed object")
	// ErrBufferTooShort matches a *BufferTooShortError with errors.Is
	// (mp.ErrBufferTooShort).
	ErrBufferTooShort = errors.New("mp: buffer too short for message")
	// ErrMessageTooLong is returned when a message exceeds the limit the
	// receiver set (mp.ErrMessageTooLong).
	ErrMessageTooLong = errors.New("mp: message longer than the limit")
)

// BufferTooShortError is returned by a receive into a buffer that the
// message does not fit (mp.BufferTooShortError). It carries the whole
// message, as Python's BufferTooShort does.
type BufferTooShortError struct {
	Message []byte
}

// Error describes the failure.
func (e *BufferTooShortError) Error() string {
	return fmt.Sprintf("mp: buffer too short for a %d-byte message", len(e.Message))
}

// Is reports whether target is ErrBufferTooShort.
func (e *BufferTooShortError) Is(target error) bool { return target == ErrBufferTooShort }

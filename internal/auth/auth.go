//go:build linux

// Package auth implements the authkey handshake of CPython's
// multiprocessing.connection, byte for byte, as functions over a small
// message-passing interface.
//
// The serving side delivers a challenge, "#CHALLENGE#" followed by a
// message M. Since CPython 3.12, M is "{sha256}" and 40 random bytes; a
// CPython 3.11 (or older) server sends 20 random bytes without a prefix.
// The answering side replies with HMAC(authkey, M) — over the whole of M,
// the "{digest}" prefix included — prefixed with "{digest}", or, to a legacy
// 20-byte challenge, the raw 16-byte HMAC-MD5. The server replies
// "#WELCOME#" or "#FAILURE#". Then the roles swap, so each side proves it
// knows the key. Every handshake message is read with a 256-byte cap.
//
// As CPython 3.12 does, a server accepts a legacy 16-byte HMAC-MD5 answer
// (so a 3.11 client can connect) and any of the digests CPython allows.
package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/go-mp/mp/internal/frame"
)

// MaxMessage caps the length of every handshake message read.
const MaxMessage = 256

// ChallengeLength is the number of random bytes in a challenge this package
// delivers (CPython 3.12's MESSAGE_LENGTH).
const ChallengeLength = 40

// legacyChallenge is the length of a CPython <= 3.11 challenge, and the
// minimum accepted; legacyAnswer is the length of a raw HMAC-MD5 answer.
const (
	legacyChallenge = 20
	legacyAnswer    = md5.Size
)

// The fixed handshake messages.
var (
	challengeTag = []byte("#CHALLENGE#")
	welcome      = []byte("#WELCOME#")
	failure      = []byte("#FAILURE#")
)

// DefaultDigest is the digest this package asks peers to use.
const DefaultDigest = "sha256"

// digests are the HMAC digests CPython accepts, by their wire name.
var digests = map[string]func() hash.Hash{
	"md5":      md5.New,
	"sha256":   sha256.New,
	"sha384":   sha512.New384,
	"sha3_256": func() hash.Hash { return sha3.New256() },
	"sha3_384": func() hash.Hash { return sha3.New384() },
}

// maxDigestName is the length of the longest name in digests.
const maxDigestName = len("sha3_256")

// ErrAuthentication is matched (with errors.Is) by every error that reports
// a failed handshake: a wrong key on either side, or a peer that does not
// speak the protocol (malformed, oversized or unexpected messages). I/O
// errors (io.EOF, io.ErrUnexpectedEOF, timeouts) are returned as they are.
var ErrAuthentication = errors.New("authentication failed")

// failed is a handshake failure; it matches ErrAuthentication.
type failed struct{ msg string }

func (e *failed) Error() string        { return e.msg }
func (e *failed) Is(target error) bool { return target == ErrAuthentication }

func failf(format string, args ...any) error {
	return &failed{msg: fmt.Sprintf(format, args...)}
}

// Messenger carries whole messages. *mp.Conn and Stream implement it.
type Messenger interface {
	// SendBytes sends b as one message.
	SendBytes(b []byte) error
	// RecvBytes receives one message; a message longer than maxLength
	// must be reported as an error.
	RecvBytes(maxLength int) ([]byte, error)
}

// SplitDigest parses a challenge message (after "#CHALLENGE#") or an
// answer. A 16- or 20-byte message is legacy: name is "" and payload is the
// whole message. Otherwise the message must start with "{name}" naming an
// allowed digest; payload is what follows.
func SplitDigest(msg []byte) (name string, payload []byte, err error) {
	if len(msg) == legacyChallenge || len(msg) == legacyAnswer {
		return "", msg, nil
	}
	if len(msg) > 0 && msg[0] == '{' {
		// The closing brace must come within the longest digest name.
		end := min(len(msg), maxDigestName+2)
		for i := 1; i < end; i++ {
			if msg[i] != '}' {
				continue
			}
			if _, ok := digests[string(msg[1:i])]; ok {
				return string(msg[1:i]), msg[i+1:], nil
			}
			break
		}
	}
	return "", nil, failf("unsupported message length (%d), missing digest prefix, or unsupported digest", len(msg))
}

func mac(digest string, key, msg []byte) []byte {
	h := hmac.New(digests[digest], key)
	h.Write(msg)
	return h.Sum(nil)
}

// NewChallenge returns a challenge message, without the "#CHALLENGE#" tag:
// "{sha256}" and ChallengeLength bytes read from random (crypto/rand when
// nil).
func NewChallenge(random io.Reader) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	msg := make([]byte, 0, len(DefaultDigest)+2+ChallengeLength)
	msg = append(msg, '{')
	msg = append(msg, DefaultDigest...)
	msg = append(msg, '}')
	msg = msg[:cap(msg)]
	if _, err := io.ReadFull(random, msg[len(DefaultDigest)+2:]); err != nil {
		return nil, fmt.Errorf("auth: reading random bytes: %w", err)
	}
	return msg, nil
}

// Response computes the answer to challenge msg (after "#CHALLENGE#"):
// the raw HMAC-MD5 for a legacy 20-byte challenge, otherwise "{name}" and
// the HMAC, with the digest the challenge names, of the whole of msg.
func Response(key, msg []byte) ([]byte, error) {
	if len(msg) < legacyChallenge {
		return nil, failf("challenge too short: %d bytes", len(msg))
	}
	name, _, err := SplitDigest(msg)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return mac("md5", key, msg), nil
	}
	out := make([]byte, 0, len(name)+2+64)
	out = append(out, '{')
	out = append(out, name...)
	out = append(out, '}')
	return append(out, mac(name, key, msg)...), nil
}

// Verify checks answer against challenge msg (after "#CHALLENGE#"): the
// answer may use any allowed digest (a raw 16-byte answer is HMAC-MD5), and
// the MAC always covers the whole of msg. The comparison takes constant
// time.
func Verify(key, msg, answer []byte) error {
	name, got, err := SplitDigest(answer)
	if err != nil {
		return err
	}
	if name == "" {
		name = "md5"
	}
	want := mac(name, key, msg)
	if len(got) != len(want) {
		return failf("expected a %d-byte %s digest, got %d bytes", len(want), name, len(got))
	}
	if !hmac.Equal(got, want) {
		return failf("digest received was wrong")
	}
	return nil
}

// DeliverChallenge is the challenging half of the handshake: it sends a
// challenge, checks the answer and replies #WELCOME# or #FAILURE#. random
// supplies the challenge bytes (crypto/rand when nil).
func DeliverChallenge(m Messenger, key []byte, random io.Reader) error {
	msg, err := NewChallenge(random)
	if err != nil {
		return err
	}
	if err := m.SendBytes(append(append([]byte(nil), challengeTag...), msg...)); err != nil {
		return err
	}
	answer, err := m.RecvBytes(MaxMessage)
	if err != nil {
		return err
	}
	if err := Verify(key, msg, answer); err != nil {
		// Tell the peer, as CPython does; the verdict is ours either way.
		m.SendBytes(failure)
		return err
	}
	return m.SendBytes(welcome)
}

// AnswerChallenge is the answering half of the handshake: it receives a
// challenge, answers it and expects #WELCOME#.
func AnswerChallenge(m Messenger, key []byte) error {
	msg, err := m.RecvBytes(MaxMessage)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(msg, challengeTag) {
		return failf("protocol error: expected a challenge, got a %d-byte message", len(msg))
	}
	answer, err := Response(key, msg[len(challengeTag):])
	if err != nil {
		return err
	}
	if err := m.SendBytes(answer); err != nil {
		return err
	}
	verdict, err := m.RecvBytes(MaxMessage)
	if err != nil {
		return err
	}
	if !bytes.Equal(verdict, welcome) {
		return failf("digest sent was rejected")
	}
	return nil
}

// Server runs the serving side's handshake (a Listener's): deliver a
// challenge, then answer the peer's.
func Server(m Messenger, key []byte, random io.Reader) error {
	if err := DeliverChallenge(m, key, random); err != nil {
		return err
	}
	return AnswerChallenge(m, key)
}

// Client runs the connecting side's handshake (a Client's): answer the
// server's challenge, then deliver one.
func Client(m Messenger, key []byte, random io.Reader) error {
	if err := AnswerChallenge(m, key); err != nil {
		return err
	}
	return DeliverChallenge(m, key, random)
}

// Stream carries handshake messages over a byte stream with CPython's
// framing. It reads exactly one frame at a time and never past it, so the
// stream can be handed to a buffered reader once the handshake is over. A
// message longer than the cap is refused from its header alone: its body is
// not read.
type Stream struct {
	RW io.ReadWriter
}

// SendBytes writes b as one frame, header and body in one write.
func (s Stream) SendBytes(b []byte) error {
	_, err := s.RW.Write(append(frame.AppendHeader(make([]byte, 0, frame.MaxHeader+len(b)), len(b)), b...))
	return err
}

// RecvBytes reads one frame. A stream that ends before a header starts
// gives io.EOF; one that ends inside a frame gives io.ErrUnexpectedEOF. A
// malformed header, or a length over maxLength, is a handshake failure.
func (s Stream) RecvBytes(maxLength int) ([]byte, error) {
	var hdr [frame.MaxHeader]byte
	have := 0
	for {
		n, _, need, err := frame.Parse(hdr[:have])
		if err != nil {
			return nil, failf("malformed message header: %v", err)
		}
		if need == 0 {
			if n > int64(maxLength) {
				return nil, failf("message of %d bytes exceeds the %d-byte handshake limit", n, maxLength)
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(s.RW, body); err != nil {
				return nil, unexpected(err)
			}
			return body, nil
		}
		m, err := io.ReadFull(s.RW, hdr[have:need])
		if err != nil {
			if have+m > 0 {
				err = unexpected(err)
			}
			return nil, err
		}
		have = need
	}
}

// unexpected turns io.EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

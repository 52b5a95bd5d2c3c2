//go:build linux

package manager

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-mp/mp/internal/cborhead"
)

// The protocol between proxies and the server, over connections made by
// package connection (CPython's framing and authkey handshake):
//
//	request: CBOR array [op, object id, args...]
//	reply:   CBOR array [0, results...] or [1, code, message, extra...]
//
// One request is in flight per connection; the server answers each with
// one reply. While a blocking request (an Acquire, a Get...) waits, the
// client may send a cancel request [opCancel, 0], which the server answers
// by ending the wait: the reply is then a cancellation error, or the
// result if the operation completed first. A cancel that arrives when
// nothing waits is ignored.
//
// An item that a Get (or TryGet) takes from a queue stays the server's
// until the client acknowledges the reply with [opAck, 0], which has no
// reply (any later request acknowledges it too): if the connection ends
// first, the item goes back to the front of its queue.
//
// The first request on every connection is a hello naming the client's
// session: connections of one session (one process's use of one manager)
// share what it holds — locks, semaphore units, references to objects —
// and the server gives it all back when the last of them closes.
//
// Values are CBOR items, stored and compared by the server as bytes: keys
// and values are encoded deterministically (sorted map keys, shortest
// numbers) so that equal values are equal bytes.

// protocolVersion is 2 since a Get's item stays the server's until the
// client acknowledges it (opAck) and the hello reply gives the server's
// message limit: a version-1 client never acknowledges, so the last item
// it took would go back to its queue when it hung up.
const protocolVersion = 2

// Request operations. flagRef, or-ed into op, asks the server to record a
// reference to the object for the session (the first use of a proxy that
// arrived from elsewhere).
const (
	opCancel uint64 = iota
	opHello
	opCreate
	opRelease
	opShutdown
	opCall
	opPing

	opDictGet
	opDictSet
	opDictDelete
	opDictLen
	opDictKeys
	opDictValues
	opDictItems
	opDictUpdate
	opDictSetDefault
	opDictPop
	opDictPopItem
	opDictContains
	opDictClear

	opListAppend
	opListExtend
	opListGet
	opListSet
	opListInsert
	opListPop
	opListRemove
	opListIndex
	opListCount
	opListLen
	opListSlice
	opListClear
	opListReverse
	opListSetSlice

	opNsGet
	opNsSet
	opNsDelete
	opNsFields

	opValueGet
	opValueSet
	opValueSwap
	opValueCAS

	opQueuePut
	opQueueTryPut
	opQueueGet
	opQueueTryGet
	opQueueSize
	opQueueFull
	opQueueTaskDone
	opQueueJoin

	opLockAcquire
	opLockTryAcquire
	opLockRelease
	opLockLocked
	opLockHeld

	opSemAcquire
	opSemTryAcquire
	opSemRelease
	opSemValue

	opCondWait
	opCondNotify

	opEventSet
	opEventClear
	opEventIsSet
	opEventWait

	opBarrierWait
	opBarrierReset
	opBarrierAbort
	opBarrierInfo

	// opUpgrade moves a unix-socket connection onto rings in shared
	// memory (see link.go). The request is followed by a message carrying
	// the memory; the reply comes over the socket, and everything after it
	// over the rings.
	opUpgrade

	// opAck acknowledges the item of a queue's Get reply (see above).
	opAck

	numOps
)

const flagRef uint64 = 1 << 7

// Reply status and error codes.
const (
	statusOK  = 0
	statusErr = 1
)

const (
	codeProtocol uint64 = iota + 1
	codeNoObject
	codeWrongKind
	codeIndex
	codeNoField
	codeEmpty
	codeFull
	codeNotHeld
	codeTooManyReleases
	codeBroken
	codeCancelled
	codeTaskDone
	codeOwnerDied // extra: the dead owner's pid; the lock is held by the caller
	codeRemote    // extra: panic flag, stack[, remoteMatch]
	codeNoMethod
	codeBadArgs
	codeUnknownType
	codeNotAllowed
	codeTimeout // a barrier's own timeout: broken, and the deadline passed
	codeExists
	codeTooLong // a request over the server's limit (Server.MaxMessage)
)

// Object kinds of the SyncManager types. Registered types use the names
// they were registered under, which may not be these.
const (
	kindDict          = "dict"
	kindList          = "list"
	kindNamespace     = "namespace"
	kindValue         = "value"
	kindArray         = "array"
	kindQueue         = "queue"
	kindJoinableQueue = "joinablequeue"
	kindLock          = "lock"
	kindRLock         = "rlock"
	kindSemaphore     = "semaphore"
	kindBounded       = "boundedsemaphore"
	kindCondition     = "condition"
	kindEvent         = "event"
	kindBarrier       = "barrier"
)

var builtinKinds = map[string]bool{
	kindDict: true, kindList: true, kindNamespace: true, kindValue: true, kindArray: true,
	kindQueue: true, kindJoinableQueue: true, kindLock: true, kindRLock: true,
	kindSemaphore: true, kindBounded: true, kindCondition: true, kindEvent: true, kindBarrier: true,
}

// tokenTag marks an encoded proxy: Tag(tokenTag, [network, address,
// instance, id, kind]). Stored inside values (a List of Dicts), it keeps
// the object it names alive.
const tokenTag = 27510

// tokenPrefix is how tokenTag's head encodes: a quick test of whether a
// value may hold a token at all.
var tokenPrefix = []byte{0xd9, tokenTag >> 8, tokenTag & 0xff}

// The codec of values. Encoding is deterministic so that the server can
// compare values and keys as bytes; decoding has the limits of package
// mp's codec.
var (
	valEnc cbor.UserBufferEncMode
	valDec cbor.DecMode
)

func init() {
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeRFC3339Nano
	var err error
	if valEnc, err = opts.UserBufferEncMode(); err != nil {
		panic(err)
	}
	valDec, err = cbor.DecOptions{
		MaxNestedLevels:  maxDepth,
		MaxArrayElements: 1 << 28,
		MaxMapPairs:      1 << 24,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

const maxDepth = 64

var errMalformed = errors.New("malformed CBOR")

// head parses the head of the CBOR item at the start of b: its major type,
// argument (a count, length or value) and the head's length.
func head(b []byte) (major byte, arg uint64, n int, err error) {
	major, arg, n, ok := cborhead.Parse(b)
	if !ok {
		return 0, 0, 0, errMalformed // truncated, reserved, or indefinite length
	}
	return major, arg, n, nil
}

// skip returns the length of the well-formed CBOR item at the start of b.
func skip(b []byte, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errors.New("CBOR nested too deeply")
	}
	major, arg, n, err := head(b)
	if err != nil {
		return 0, err
	}
	switch major {
	case 0, 1:
	case 2, 3:
		if arg > uint64(len(b)-n) {
			return 0, errMalformed
		}
		n += int(arg)
	case 4, 5:
		if major == 5 {
			if arg > math.MaxUint64/2 {
				return 0, errMalformed
			}
			arg *= 2
		}
		for ; arg > 0; arg-- {
			m, err := skip(b[n:], depth+1)
			if err != nil {
				return 0, err
			}
			n += m
		}
	case 6:
		m, err := skip(b[n:], depth+1)
		if err != nil {
			return 0, err
		}
		n += m
	case 7:
		if b[0]&31 == 24 && arg < 32 {
			return 0, errMalformed
		}
	}
	return n, nil
}

// readUint reads an unsigned integer item.
func readUint(b []byte) (uint64, int, error) {
	major, arg, n, err := head(b)
	if err != nil || major != 0 {
		return 0, 0, errMalformed
	}
	return arg, n, nil
}

// readInt reads a signed integer item that fits an int64.
func readInt(b []byte) (int64, error) {
	major, arg, _, err := head(b)
	if err != nil || arg > math.MaxInt64 {
		return 0, errMalformed
	}
	switch major {
	case 0:
		return int64(arg), nil
	case 1:
		return -1 - int64(arg), nil
	}
	return 0, errMalformed
}

// readText reads a text string item.
func readText(b []byte) (string, error) {
	major, arg, n, err := head(b)
	if err != nil || major != 3 || arg > uint64(len(b)-n) {
		return "", errMalformed
	}
	return string(b[n : n+int(arg)]), nil
}

// readBytes reads a byte string item, without copying.
func readBytes(b []byte) ([]byte, error) {
	major, arg, n, err := head(b)
	if err != nil || major != 2 || arg > uint64(len(b)-n) {
		return nil, errMalformed
	}
	return b[n : n+int(arg)], nil
}

// isNull reports whether the item is null (or undefined).
func isNull(b []byte) bool { return len(b) == 1 && (b[0] == 0xf6 || b[0] == 0xf7) }

// splitArray parses an array of items and appends each item's bytes to
// dst. The items alias b.
func splitArray(dst [][]byte, b []byte) ([][]byte, int, error) {
	major, count, n, err := head(b)
	if err != nil || major != 4 || count > uint64(len(b)) {
		return dst, 0, errMalformed
	}
	for ; count > 0; count-- {
		m, err := skip(b[n:], 1)
		if err != nil {
			return dst, 0, err
		}
		dst = append(dst, b[n:n+m])
		n += m
	}
	return dst, n, nil
}

// splitMessage parses a whole message, an array of items.
func splitMessage(dst [][]byte, b []byte) ([][]byte, error) {
	dst, n, err := splitArray(dst, b)
	if err != nil {
		return dst, err
	}
	if n != len(b) {
		return dst, errMalformed
	}
	return dst, nil
}

func appendHead(b []byte, major byte, arg uint64) []byte { return cborhead.Append(b, major, arg) }

func appendUint(b []byte, v uint64) []byte { return appendHead(b, 0, v) }

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendHead(b, 1, uint64(-1-v))
	}
	return appendHead(b, 0, uint64(v))
}

func appendText(b []byte, s string) []byte { return append(appendHead(b, 3, uint64(len(s))), s...) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xf5)
	}
	return append(b, 0xf4)
}

const cborNull = 0xf6

// token identifies an object of a manager: where the manager is, which
// run of it (instance), the object's id and kind. The id is 64 random
// bits (see Server.newID): having been given it is what lets a client
// reach the object.
type token struct {
	Network  string
	Address  string
	Instance uint64
	ID       uint64
	Kind     string
}

func appendToken(b []byte, t *token) []byte {
	b = appendHead(b, 6, tokenTag)
	b = appendHead(b, 4, 5)
	b = appendText(b, t.Network)
	b = appendText(b, t.Address)
	b = appendUint(b, t.Instance)
	b = appendUint(b, t.ID)
	return appendText(b, t.Kind)
}

// parseToken decodes an encoded token (with its tag).
func parseToken(b []byte) (token, error) {
	var t token
	major, tag, n, err := head(b)
	if err != nil || major != 6 || tag != tokenTag {
		if err == nil && major == 7 && isNull(b) {
			return t, errNullToken
		}
		return t, fmt.Errorf("manager: not a proxy token")
	}
	var items [5][]byte
	parts, m, err := splitArray(items[:0], b[n:])
	if err != nil || n+m != len(b) || len(parts) != 5 {
		return t, fmt.Errorf("manager: malformed proxy token")
	}
	if t.Network, err = readText(parts[0]); err == nil {
		if t.Address, err = readText(parts[1]); err == nil {
			if t.Instance, _, err = readUint(parts[2]); err == nil {
				if t.ID, _, err = readUint(parts[3]); err == nil {
					t.Kind, err = readText(parts[4])
				}
			}
		}
	}
	if err != nil {
		return t, fmt.Errorf("manager: malformed proxy token")
	}
	return t, nil
}

var errNullToken = errors.New("manager: null token")

// mayHoldTokens is a quick test that rules out most values.
func mayHoldTokens(b []byte) bool { return bytes.Contains(b, tokenPrefix) }

// walkTokens calls fn for each token held in the well-formed item b.
func walkTokens(b []byte, fn func(t *token)) {
	walk(b, 0, fn)
}

func walk(b []byte, depth int, fn func(t *token)) int {
	major, arg, n, err := head(b)
	if err != nil || depth > maxDepth {
		return len(b)
	}
	switch major {
	case 2, 3:
		n += int(arg)
	case 4, 5:
		if major == 5 {
			arg *= 2
		}
		for ; arg > 0 && n < len(b); arg-- {
			n += walk(b[n:], depth+1, fn)
		}
	case 6:
		if arg == tokenTag {
			m, err := skip(b[n:], depth+1)
			if err != nil {
				return len(b)
			}
			if t, err := parseToken(b[:n+m]); err == nil {
				fn(&t)
			}
			return n + m
		}
		n += walk(b[n:], depth+1, fn)
	}
	return min(n, len(b))
}

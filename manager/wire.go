//go:build linux

package manager

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/go-mp/mp/internal/codec"
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
//
// Values are encoded with codec.DetMarshal and decoded with the codec's
// limits (codec.Unmarshal). The requests and replies around them are
// written and read by hand with codec's reader and writer
// (codec.AppendUint, codec.SplitMessage...), on purpose: a call costs
// about a microsecond, which the codec's reflection would multiply.

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

// Proxies travel as tokens, Tag(codec.TokenTag, [network, address,
// instance, id, kind]). Stored inside values (a List of Dicts), a token
// keeps the object it names alive.

// tokenPrefix is how the token tag's head encodes: a quick test of
// whether a value may hold a token at all.
var tokenPrefix = codec.AppendHead(nil, codec.MajorTag, codec.TokenTag)

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
	b = codec.AppendHead(b, codec.MajorTag, codec.TokenTag)
	b = codec.AppendHead(b, codec.MajorArray, 5)
	b = codec.AppendText(b, t.Network)
	b = codec.AppendText(b, t.Address)
	b = codec.AppendUint(b, t.Instance)
	b = codec.AppendUint(b, t.ID)
	return codec.AppendText(b, t.Kind)
}

// parseToken decodes an encoded token (with its tag).
func parseToken(b []byte) (token, error) {
	var t token
	major, tag, n, err := codec.Head(b)
	if err != nil || major != codec.MajorTag || tag != codec.TokenTag {
		if err == nil && major == codec.MajorSimple && codec.IsNull(b) {
			return t, errNullToken
		}
		return t, fmt.Errorf("manager: not a proxy token")
	}
	var items [5][]byte
	parts, m, err := codec.SplitArray(items[:0], b[n:])
	if err != nil || n+m != len(b) || len(parts) != 5 {
		return t, fmt.Errorf("manager: malformed proxy token")
	}
	if t.Network, err = codec.ReadText(parts[0]); err == nil {
		if t.Address, err = codec.ReadText(parts[1]); err == nil {
			if t.Instance, _, err = codec.ReadUint(parts[2]); err == nil {
				if t.ID, _, err = codec.ReadUint(parts[3]); err == nil {
					t.Kind, err = codec.ReadText(parts[4])
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
	codec.EachTagged(b, codec.TokenTag, func(item []byte) {
		if t, err := parseToken(item); err == nil {
			fn(&t)
		}
	})
}

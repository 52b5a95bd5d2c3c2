//go:build linux

package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mgrkv"
)

// The kinds of a replicated store beyond Dict, Value, Lock and Queue (see
// kv.go and the package documentation): Namespace, Event, the semaphores,
// RLock, JoinableQueue, List and Array.

// openMore sets up the object of one of these kinds, creating its key if
// absent; it reports false for a kind it does not know.
func (x *kvObj) openMore(ctx context.Context, args []any) (bool, error) {
	var init []byte
	switch x.kind {
	case kindNamespace:
		x.key = "n." + x.name + "."
		return true, nil
	case kindEvent:
		x.key, init = "e."+x.name, codec.AppendBool(nil, false)
	case kindSemaphore, kindBounded:
		n, _ := args[0].(int)
		if n < 0 {
			return true, fmt.Errorf("manager: semaphore value %d below 0", n)
		}
		bound := -1
		if x.kind == kindBounded {
			bound = n
		}
		x.key, init = "s."+x.name, semValue(n, bound)
	case kindJoinableQueue:
		if n, _ := args[0].(int); n > 0 {
			return true, fmt.Errorf("%w: a bounded queue on %s", ErrUnknownType, x.s.network)
		}
		// Its queue is named apart from a Queue of the same name (names
		// are per kind): "=" is in no encoded name (see kvName), and a
		// store takes it in a queue's name.
		x.key, x.aux, init = "j="+x.name, "j."+x.name, codec.AppendInt(nil, 0)
	case kindBarrier:
		parties, _ := args[0].(int)
		timeout, _ := args[1].(int)
		if parties < 1 {
			return true, fmt.Errorf("manager: barrier of %d parties", parties)
		}
		b, err := codec.DetMarshal(barrierState{Parties: parties, Timeout: time.Duration(timeout)})
		if err != nil {
			return true, err
		}
		x.key, init = "b."+x.name, b
	case kindList, kindArray:
		b, err := encodeArg(args[0])
		if err != nil {
			return true, err
		}
		x.key, init = "L."+x.name, b
		if x.kind == kindArray {
			x.key = "A." + x.name
		}
	default:
		return false, nil
	}
	key := x.key
	if x.aux != "" {
		key = x.aux
	}
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	if _, _, err := x.s.st.Create(wctx, key, init, 0); err != nil && !errors.Is(err, mgrkv.ErrExists) {
		return true, err
	}
	return true, nil
}

// update reads key's value (nil if unset) and writes what f makes of it,
// checked against the revision read, again until no other writer came in
// between (see mgrkv.Contention); f returning nil writes nothing.
func (x *kvObj) update(ctx context.Context, key string, f func(cur []byte) ([]byte, error)) error {
	var cont mgrkv.Contention
	for {
		e, err := x.s.st.Get(ctx, key)
		if err != nil {
			return err
		}
		var cur []byte
		if e.Op == mgrkv.OpPut {
			cur = nonNil(e.Value)
		}
		next, err := f(cur)
		if err != nil || next == nil {
			return err
		}
		if _, err = x.s.st.Update(ctx, key, next, e.Revision, 0); !errors.Is(err, mgrkv.ErrRevision) {
			return err
		}
		if err := cont.Lost(ctx); err != nil {
			return err
		}
	}
}

// corrupt is ErrCorrupt, saying what of the object's state is wrong.
func corrupt(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	return fmt.Errorf("%w: %s", ErrCorrupt, what)
}

// read returns key's value, ErrNoObject if it is unset.
func (x *kvObj) read(ctx context.Context, key string) ([]byte, error) {
	e, err := x.s.st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if e.Op != mgrkv.OpPut {
		return nil, ErrNoObject
	}
	return nonNil(e.Value), nil
}

func (x *kvObj) moreCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	switch x.kind {
	case kindNamespace:
		return x.nsCall(ctx, op, a)
	case kindEvent:
		return x.eventCall(ctx, op)
	case kindSemaphore, kindBounded:
		return x.semCall(ctx, op)
	case kindJoinableQueue:
		return x.joinableCall(ctx, op, a)
	case kindList, kindArray:
		return x.listCall(ctx, op, a)
	case kindBarrier:
		return x.barrierCall(ctx, op)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownMethod, x.kind)
}

// ---- Namespace ----

func (x *kvObj) nsCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	st := x.s.st
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	var field string
	if len(a) > 0 {
		f, err := codec.ReadText(a[0])
		if err != nil {
			return nil, errors.New("manager: a field name is a string")
		}
		field = f
	}
	key := x.key + kvName([]byte(field))
	switch op {
	case opNsGet:
		e, err := st.Get(wctx, key)
		if err != nil {
			return nil, err
		}
		if e.Op != mgrkv.OpPut {
			return nil, fmt.Errorf("%w: namespace has no field %q", ErrNoField, field)
		}
		return kvReply(e.Value), nil
	case opNsSet:
		_, err := st.Put(wctx, key, a[1])
		return kvReply(), err
	case opNsDelete:
		_, ok, err := x.take(wctx, key)
		return kvReply(kvBool(ok)), err
	case opNsFields:
		_, bs, err := x.names(wctx)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(bs))
		for i, b := range bs {
			names[i] = string(b)
		}
		slices.Sort(names)
		items := make([][]byte, len(names))
		for i, n := range names {
			items[i] = codec.AppendText(nil, n)
		}
		return kvReply(arrayItem(items)), nil
	}
	return nil, errMethod(x.kind, op)
}

// ---- Event ----

var (
	cborTrue  = codec.AppendBool(nil, true)
	cborFalse = codec.AppendBool(nil, false)
)

func (x *kvObj) eventCall(ctx context.Context, op uint64) (*cconn, error) {
	st := x.s.st
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	switch op {
	case opEventSet, opEventClear:
		_, err := st.Put(wctx, x.key, codec.AppendBool(nil, op == opEventSet))
		return kvReply(), err
	case opEventIsSet:
		set, err := x.eventFlag(wctx)
		return kvReply(kvBool(set)), err
	case opEventWait:
		_, err := x.waitKey(ctx, x.key, true, x.eventFlag)
		return kvReply(), err
	}
	return nil, errMethod(x.kind, op)
}

// eventFlag reads an Event's flag: its key holds true or false.
func (x *kvObj) eventFlag(ctx context.Context) (bool, error) {
	v, err := x.read(ctx, x.key)
	switch {
	case err != nil:
		return false, err
	case bytes.Equal(v, cborTrue):
		return true, nil
	case bytes.Equal(v, cborFalse):
		return false, nil
	}
	return false, corrupt("an event's flag is not a boolean", nil)
}

// ---- Semaphore and BoundedSemaphore ----

// A semaphore's key holds [value, bound] (bound -1: none).
func semValue(n, bound int) []byte {
	b, _ := codec.DetMarshal([2]int{n, bound})
	return b
}

func (x *kvObj) semCall(ctx context.Context, op uint64) (*cconn, error) {
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	parse := func(cur []byte) ([2]int, error) {
		var s [2]int
		switch {
		case cur == nil:
			return s, ErrNoObject
		case codec.Unmarshal(cur, &s) != nil || !bytes.Equal(semValue(s[0], s[1]), cur):
			return s, corrupt("a semaphore is not [value, bound]", nil)
		case s[0] < 0 || s[1] < -1 || (s[1] >= 0 && s[0] > s[1]):
			return s, corrupt(fmt.Sprintf("a semaphore of value %d and bound %d", s[0], s[1]), nil)
		}
		return s, nil
	}
	// take takes a unit if there is one.
	take := func(ctx context.Context) (bool, error) {
		took := false
		err := x.update(ctx, x.key, func(cur []byte) ([]byte, error) {
			s, err := parse(cur)
			if err != nil || s[0] == 0 {
				return nil, err
			}
			took = true
			return semValue(s[0]-1, s[1]), nil
		})
		return took, err
	}
	switch op {
	case opSemAcquire:
		_, err := x.waitKey(ctx, x.key, true, take)
		return kvReply(), err
	case opSemTryAcquire:
		ok, err := take(wctx)
		return kvReply(kvBool(ok)), err
	case opSemRelease:
		err := x.update(wctx, x.key, func(cur []byte) ([]byte, error) {
			s, err := parse(cur)
			if err != nil {
				return nil, err
			}
			if (s[1] >= 0 && s[0] >= s[1]) || s[0] == math.MaxInt {
				return nil, mp.ErrReleasedTooManyTimes
			}
			return semValue(s[0]+1, s[1]), nil
		})
		return kvReply(), err
	case opSemValue:
		v, err := x.read(wctx, x.key)
		if err != nil {
			return nil, err
		}
		s, err := parse(v)
		return kvReply(kvInt(s[0])), err
	}
	return nil, errMethod(x.kind, op)
}

// ---- JoinableQueue ----

// The count of unfinished items is a key of its own (x.aux): a Put adds
// one before it puts the item, TaskDone takes one, Join waits for 0.
func (x *kvObj) joinableCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	add := func(d int64) error {
		return x.update(wctx, x.aux, func(cur []byte) ([]byte, error) {
			n, err := unfinished(cur)
			switch {
			case err != nil:
				return nil, err
			case d > 0 && n > math.MaxInt64-d:
				return nil, corrupt("a queue's count of unfinished items overflows", nil)
			case n+d < 0:
				return nil, mp.ErrTaskDone
			}
			return codec.AppendInt(nil, n+d), nil
		})
	}
	switch op {
	case opQueuePut, opQueueTryPut:
		if err := add(1); err != nil {
			return nil, err
		}
	case opQueueTaskDone:
		return kvReply(), add(-1)
	case opQueueJoin:
		_, err := x.waitKey(ctx, x.aux, true, func(ctx context.Context) (bool, error) {
			v, err := x.read(ctx, x.aux)
			if err != nil {
				return false, err
			}
			n, err := unfinished(v)
			return err == nil && n == 0, err
		})
		return kvReply(), err
	}
	return x.queueCall(ctx, op, a)
}

// unfinished parses a JoinableQueue's count of unfinished items (cur nil:
// unset).
func unfinished(cur []byte) (int64, error) {
	if cur == nil {
		return 0, ErrNoObject
	}
	n, err := codec.ReadInt(cur)
	if err != nil || n < 0 || !bytes.Equal(codec.AppendInt(nil, n), cur) {
		return 0, corrupt("a queue's count of unfinished items is not a count", err)
	}
	return n, nil
}

// nonNil makes the value of a set key that is empty non-nil (nil means
// unset).
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// ---- List and Array ----

// A list's key holds the CBOR array of its items; each operation reads
// it and, if it changes it, writes it back checked against the revision
// read (so each is atomic, and a long list makes every write long).
func (x *kvObj) listCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	if x.kind == kindArray {
		switch op {
		case opListGet, opListSet, opListLen, opListSlice, opListSetSlice, opListIndex, opListCount:
		default:
			return nil, errMethod(x.kind, op)
		}
	}
	ints := make([]int64, len(a))
	for i, b := range a {
		ints[i], _ = codec.ReadInt(b) // read only where an argument is an index
	}
	var out [][]byte // the reply's items
	err := x.update(wctx, x.key, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return nil, ErrNoObject
		}
		items, err := codec.SplitMessage(nil, cur)
		if err != nil {
			return nil, corrupt("a sequence is not an array of items", err)
		}
		n := len(items)
		at := func() (int, error) {
			j, ok := index(ints[0], n)
			if !ok {
				return 0, ErrIndex
			}
			return j, nil
		}
		out = nil
		switch op {
		case opListAppend:
			items = append(items, a[0])
		case opListExtend:
			more, _, err := codec.SplitArray(nil, a[0])
			if err != nil {
				return nil, err
			}
			items = append(items, more...)
		case opListGet:
			j, err := at()
			if err != nil {
				return nil, err
			}
			out = [][]byte{items[j]}
			return nil, nil
		case opListSet:
			j, err := at()
			if err != nil {
				return nil, err
			}
			items[j] = a[1]
		case opListInsert:
			j, _ := bounds(ints[0], ints[0], n)
			items = slices.Insert(items, j, a[1])
		case opListPop:
			j, err := at()
			if err != nil {
				return nil, err
			}
			out = [][]byte{items[j]}
			items = slices.Delete(items, j, j+1)
		case opListRemove:
			j := slices.IndexFunc(items, func(it []byte) bool { return bytes.Equal(it, a[0]) })
			out = [][]byte{kvBool(j >= 0)}
			if j < 0 {
				return nil, nil
			}
			items = slices.Delete(items, j, j+1)
		case opListIndex:
			out = [][]byte{kvInt(slices.IndexFunc(items, func(it []byte) bool { return bytes.Equal(it, a[0]) }))}
			return nil, nil
		case opListCount:
			c := 0
			for _, it := range items {
				if bytes.Equal(it, a[0]) {
					c++
				}
			}
			out = [][]byte{kvInt(c)}
			return nil, nil
		case opListLen:
			out = [][]byte{kvInt(n)}
			return nil, nil
		case opListSlice:
			lo, hi := bounds(ints[0], ints[1], n)
			out = [][]byte{arrayItem(items[lo:hi])}
			return nil, nil
		case opListClear:
			items = nil
		case opListReverse:
			slices.Reverse(items)
		case opListSetSlice:
			lo, hi := bounds(ints[0], ints[1], n)
			repl, _, err := codec.SplitArray(nil, a[2])
			if err != nil {
				return nil, err
			}
			if x.kind == kindArray && len(repl) != hi-lo {
				return nil, ErrIndex
			}
			items = slices.Concat(items[:lo], repl, items[hi:])
		default:
			return nil, errMethod(x.kind, op)
		}
		return arrayItem(items), nil
	})
	if err != nil {
		return nil, err
	}
	return kvReply(out...), nil
}

// ---- Barrier ----

// barrierState is a Barrier's key: the generation under way, the parties
// waiting in it, and the last generations ended by a Reset (whose
// waiters get mp.ErrBrokenBarrier), as many as barrierResets.
type barrierState struct {
	_       struct{} `cbor:",toarray"`
	Gen     uint64
	Count   int
	Broken  bool
	Parties int
	Timeout time.Duration
	Resets  []uint64
}

const barrierResets = 8

// parseBarrier parses a Barrier's key (cur nil: unset) and checks that it
// says what can be.
func parseBarrier(cur []byte) (barrierState, error) {
	var s barrierState
	switch {
	case cur == nil:
		return s, ErrNoObject
	case codec.Unmarshal(cur, &s) != nil:
		return s, corrupt("a barrier's state does not parse", nil)
	case s.Parties < 1 || s.Count < 0 || s.Count >= s.Parties || s.Timeout < 0 || len(s.Resets) > barrierResets:
		return s, corrupt(fmt.Sprintf("a barrier of %d parties, %d waiting", s.Parties, s.Count), nil)
	}
	return s, nil
}

func (x *kvObj) barrierCall(ctx context.Context, op uint64) (*cconn, error) {
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	var st barrierState
	change := func(f func(s *barrierState) (bool, error)) error {
		return x.update(wctx, x.key, func(cur []byte) ([]byte, error) {
			var err error
			if st, err = parseBarrier(cur); err != nil {
				return nil, err
			}
			if write, err := f(&st); !write || err != nil {
				return nil, err
			}
			return codec.DetMarshal(st)
		})
	}
	switch op {
	case opBarrierWait:
		return x.barrierWait(ctx, change)
	case opBarrierReset:
		return kvReply(), change(func(s *barrierState) (bool, error) {
			s.Resets = append(s.Resets, s.Gen)
			if len(s.Resets) > barrierResets {
				s.Resets = s.Resets[1:]
			}
			s.Gen, s.Count, s.Broken = s.Gen+1, 0, false
			return true, nil
		})
	case opBarrierAbort:
		return kvReply(), change(func(s *barrierState) (bool, error) {
			s.Broken = true
			return true, nil
		})
	case opBarrierInfo:
		if err := change(func(*barrierState) (bool, error) { return false, nil }); err != nil {
			return nil, err
		}
		return kvReply(kvInt(st.Parties), kvInt(st.Count), kvBool(st.Broken)), nil
	}
	return nil, errMethod(x.kind, op)
}

// barrierWait counts the caller in the generation under way and, unless
// it is the last party, waits for the generation to end.
func (x *kvObj) barrierWait(ctx context.Context, change func(func(s *barrierState) (bool, error)) error) (*cconn, error) {
	var gen uint64
	var idx int
	var timeout time.Duration
	last := false
	err := change(func(s *barrierState) (bool, error) {
		if s.Broken {
			return false, mp.ErrBrokenBarrier
		}
		gen, idx, timeout = s.Gen, s.Count, s.Timeout
		if last = s.Count+1 == s.Parties; last {
			s.Gen, s.Count = s.Gen+1, 0
		} else {
			s.Count++
		}
		return true, nil
	})
	if err != nil || last {
		return kvReply(kvInt(idx)), err
	}
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var st barrierState
	_, err = x.waitKey(wctx, x.key, true, func(ctx context.Context) (bool, error) {
		v, err := x.read(ctx, x.key)
		if err == nil {
			st, err = parseBarrier(v)
		}
		return err == nil && (st.Gen != gen || st.Broken), err
	})
	switch {
	case err == nil && st.Gen != gen:
		if slices.Contains(st.Resets, gen) {
			return nil, mp.ErrBrokenBarrier
		}
		return kvReply(kvInt(idx)), nil
	case err == nil:
		return nil, mp.ErrBrokenBarrier
	}
	// The wait ended (ctx, or the barrier's timeout): it breaks the
	// generation, unless it ended meanwhile.
	cause := err
	if ctx.Err() == nil && wctx.Err() != nil {
		cause = context.DeadlineExceeded
	}
	bctx, cancel := writeCtx(ctx)
	defer cancel()
	passed := false
	x.update(bctx, x.key, func(cur []byte) ([]byte, error) {
		s, err := parseBarrier(cur)
		if err != nil || s.Broken {
			return nil, nil
		}
		if s.Gen != gen {
			passed = !slices.Contains(s.Resets, gen)
			return nil, nil
		}
		s.Broken = true
		return codec.DetMarshal(s)
	})
	if passed {
		return kvReply(kvInt(idx)), nil
	}
	return nil, fmt.Errorf("%w: %w", mp.ErrBrokenBarrier, cause)
}

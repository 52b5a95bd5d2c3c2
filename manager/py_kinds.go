//go:build linux

package manager

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
)

// The methods of Python's proxies, kind by kind (see py_methods.go). Each
// runs the operation a Go proxy would (so that both see the same object
// behave the same way) and makes of its result what the Python method
// returns or raises.

// enc encodes argument v of the call as the object stores it (an Array
// coerces it to its typecode); on error it replies and returns false.
func (pc *pyCall) enc(v any) ([]byte, bool) {
	var b []byte
	var err error
	if l, ok := pc.o.impl.(*listObj); ok && l.typecode != 0 {
		b, err = l.coerce(v)
	} else {
		b, err = encodePy(pc.c, v)
	}
	if err != nil {
		pc.fail(err)
		return nil, false
	}
	return b, true
}

// need reads required argument i (or keyword name) and encodes it.
func (pc *pyCall) encArg(i int, name string) ([]byte, any, bool) {
	v := pc.arg(i, name, nil)
	b, ok := pc.enc(v)
	return b, v, ok
}

// now runs an operation that never waits and returns its result.
func (pc *pyCall) now(op uint64, args [][]byte) *opResult {
	c := pc.c
	r := &reply{s: c.s, sess: c.sess}
	r.reset()
	x := &call{s: c.s, c: c, sess: c.sess, obj: pc.o, op: op, args: args, r: r}
	if wait := pc.o.impl.handle(x); wait != nil {
		// Not an operation that waits: end the wait at once.
		p := &pending{cancel: make(chan struct{}), dead: make(chan struct{})}
		p.cancelled()
		r.reset()
		wait(p, r)
	}
	res := parseResult(r)
	res.c = c
	c.flushDrops(r)
	return &res
}

// retValue replies with result item i as a Python value.
func retValue(res *opResult, i int) pyMsg {
	if !res.ok {
		return res.exc()
	}
	v, err := res.value(i)
	if err != nil {
		return pyFail(err)
	}
	return pyReturn(v)
}

// list decodes result item i, an array, as a list (hashable: of
// tuples and frozensets, for keys).
func (res *opResult) list(i int, hashable bool) ([]any, error) {
	if i >= len(res.items) {
		return nil, fmt.Errorf("short reply")
	}
	elems, _, err := codec.SplitArray(nil, res.items[i])
	if err != nil {
		return nil, err
	}
	out := make([]any, len(elems))
	for j, e := range elems {
		v, _, err := readPy(res.c, e, hashable, 1)
		if err != nil {
			return nil, err
		}
		out[j] = v
	}
	return out, nil
}

// ---- dict ----

func pyDictMethods() map[string]pyMethod {
	return map[string]pyMethod{
		"__getitem__": func(pc *pyCall) { pyDictGet(pc, false) },
		"get":         func(pc *pyCall) { pyDictGet(pc, true) },
		"__setitem__": func(pc *pyCall) {
			if !pc.check(2, "key", "value") {
				return
			}
			k, _, ok := pc.encArg(0, "key")
			if !ok {
				return
			}
			v, _, ok := pc.encArg(1, "value")
			if ok {
				pc.run(opDictSet, noTimeout, [][]byte{k, v}, okNone)
			}
		},
		"__delitem__": func(pc *pyCall) {
			if !pc.check(1, "key") {
				return
			}
			k, key, ok := pc.encArg(0, "key")
			if ok {
				pc.run(opDictDelete, noTimeout, args1(k), func(res *opResult) pyMsg {
					if res.ok && !res.bool(0) {
						return pyRaise(excKeyError, key)
					}
					return okNone(res)
				})
			}
		},
		"__contains__": func(pc *pyCall) {
			if !pc.check(1, "key") {
				return
			}
			if k, _, ok := pc.encArg(0, "key"); ok {
				pc.run(opDictContains, noTimeout, args1(k), retBool)
			}
		},
		"__len__": pySimple(opDictLen, func(res *opResult) any { return res.int(0) }),
		"clear":   pySimple(opDictClear, nil),
		"copy": func(pc *pyCall) {
			if pc.check(0) {
				pyDictCopy(pc, pyReturn)
			}
		},
		"keys": func(pc *pyCall) {
			if pc.check(0) {
				pc.run(opDictKeys, noTimeout, nil, func(res *opResult) pyMsg { return retItems(res, true) })
			}
		},
		"values": func(pc *pyCall) {
			if pc.check(0) {
				pc.run(opDictValues, noTimeout, nil, func(res *opResult) pyMsg { return retItems(res, false) })
			}
		},
		"items": func(pc *pyCall) {
			if pc.check(0) {
				pc.run(opDictItems, noTimeout, nil, func(res *opResult) pyMsg {
					if !res.ok {
						return res.exc()
					}
					pairs, err := res.pairs(0)
					if err != nil {
						return pyFail(err)
					}
					items := make([]any, len(pairs))
					for i, p := range pairs {
						items[i] = ogórek.Tuple{p[0], p[1]}
					}
					return pyReturn(items)
				})
			}
		},
		"pop": func(pc *pyCall) {
			if !pc.check(1, "key", "default") {
				return
			}
			k, key, ok := pc.encArg(0, "key")
			if !ok {
				return
			}
			def, hasDef := pc.args.get(1, "default")
			pc.run(opDictPop, noTimeout, args1(k), func(res *opResult) pyMsg {
				switch {
				case !res.ok:
					return res.exc()
				case res.bool(0):
					return retValue(res, 1)
				case hasDef:
					return pyReturn(def)
				}
				return pyRaise(excKeyError, key)
			})
		},
		"popitem": func(pc *pyCall) {
			if pc.check(0) {
				pc.run(opDictPopItem, noTimeout, nil, func(res *opResult) pyMsg {
					if res.ok && !res.bool(0) {
						return pyRaise(excKeyError, "popitem(): dictionary is empty")
					}
					if !res.ok {
						return res.exc()
					}
					k, _, err := readPy(res.c, res.items[1], true, 0)
					if err != nil {
						return pyFail(err)
					}
					v, err := res.value(2)
					if err != nil {
						return pyFail(err)
					}
					return pyReturn(ogórek.Tuple{k, v})
				})
			}
		},
		"setdefault": func(pc *pyCall) {
			if !pc.check(1, "key", "default") {
				return
			}
			k, _, ok := pc.encArg(0, "key")
			if !ok {
				return
			}
			if d, _, ok := pc.encArg(1, "default"); ok {
				pc.run(opDictSetDefault, noTimeout, [][]byte{k, d}, func(res *opResult) pyMsg { return retValue(res, 0) })
			}
		},
		"update": func(pc *pyCall) {
			pairs, err := pyPairs(pc.c, &pc.args)
			if err != nil {
				pc.fail(err)
				return
			}
			pc.run(opDictUpdate, noTimeout, args1(encodePairs(pairs)), okNone)
		},
		"__iter__": func(pc *pyCall) {
			if !pc.check(0) {
				return
			}
			res := pc.now(opDictKeys, nil)
			if !res.ok {
				pc.reply(res.exc())
				return
			}
			elems, _, err := codec.SplitArray(nil, res.items[0])
			if err != nil {
				pc.fail(err)
				return
			}
			it := &iterObj{}
			for _, e := range elems {
				it.items = append(it.items, slices.Clone(e))
			}
			o := pc.c.s.pyAdd(kindIterator, it)
			pc.reply(pyMsg{"#PROXY", ogórek.Tuple{pyExposed(o), pyToken("Iterator", o.id)}})
		},
	}
}

// pyDictGet serves __getitem__ (missing: KeyError) and get (missing: the
// default).
func pyDictGet(pc *pyCall, orDefault bool) {
	if orDefault && !pc.check(1, "key", "default") || !orDefault && !pc.check(1, "key") {
		return
	}
	k, key, ok := pc.encArg(0, "key")
	if !ok {
		return
	}
	def := pc.arg(1, "default", nil)
	pc.run(opDictGet, noTimeout, args1(k), func(res *opResult) pyMsg {
		switch {
		case !res.ok:
			return res.exc()
		case res.bool(0):
			return retValue(res, 1)
		case orDefault:
			return pyReturn(def)
		}
		return pyRaise(excKeyError, key)
	})
}

// pyDictCopy replies with what fin makes of a copy of the dict (see
// pyDict), in its order.
func pyDictCopy(pc *pyCall, fin func(d any) pyMsg) {
	pc.run(opDictItems, noTimeout, nil, func(res *opResult) pyMsg {
		if !res.ok {
			return res.exc()
		}
		pairs, err := res.pairs(0)
		if err != nil {
			return pyFail(err)
		}
		return fin(pyDict(pairs))
	})
}

// pairs decodes result item i, an array of [key, value] arrays.
func (res *opResult) pairs(i int) ([][2]any, error) {
	if i >= len(res.items) {
		return nil, fmt.Errorf("short reply")
	}
	elems, _, err := codec.SplitArray(nil, res.items[i])
	if err != nil {
		return nil, err
	}
	out := make([][2]any, len(elems))
	for j, e := range elems {
		var kv [2][]byte
		parts, _, err := codec.SplitArray(kv[:0], e)
		if err != nil || len(parts) != 2 {
			return nil, codec.ErrMalformed
		}
		if out[j][0], _, err = readPy(res.c, parts[0], true, 1); err != nil {
			return nil, err
		}
		if out[j][1], err = decodePy(res.c, parts[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func retBool(res *opResult) pyMsg {
	if !res.ok {
		return res.exc()
	}
	return pyReturn(res.bool(0))
}

func retItems(res *opResult, hashable bool) pyMsg {
	if !res.ok {
		return res.exc()
	}
	items, err := res.list(0, hashable)
	if err != nil {
		return pyFail(err)
	}
	return pyReturn(items)
}

// iterObj is the iterator a dict's __iter__ returns: the keys the dict
// had then. It holds no references to the objects that tokens in them
// name (Python cannot read those).
type iterObj struct {
	mu    sync.Mutex
	items [][]byte
}

func (it *iterObj) handle(x *call) waitFn {
	x.badOp()
	return nil
}

func (it *iterObj) free() ([][]byte, []uint64) {
	it.mu.Lock()
	it.items = nil
	it.mu.Unlock()
	return nil, nil
}

func pyIteratorMethods() map[string]pyMethod {
	next := func(pc *pyCall) {
		it := pc.o.impl.(*iterObj)
		it.mu.Lock()
		if len(it.items) == 0 {
			it.mu.Unlock()
			pc.reply(pyRaise(excStopIteration))
			return
		}
		b := it.items[0]
		it.items = it.items[1:]
		it.mu.Unlock()
		v, _, err := readPy(pc.c, b, true, 0)
		if err != nil {
			pc.fail(err)
			return
		}
		pc.ret(v)
	}
	return map[string]pyMethod{
		"__next__": next,
		"send":     next,
		"close": func(pc *pyCall) {
			it := pc.o.impl.(*iterObj)
			it.mu.Lock()
			it.items = nil
			it.mu.Unlock()
			pc.ret(nil)
		},
		"throw": func(pc *pyCall) { pc.reply(pyRaise(excTypeError, "the iterator of an mp manager cannot throw")) },
	}
}

// ---- list and Array ----

// pySlice is a Python slice's bounds.
type pySlice struct {
	lo, hi int64
	step   int64
}

// pyIndex reads an index argument: an int, or a slice (ok) of ints or
// None. A slice's ints beyond int64 are taken as its ends, as CPython
// clamps them; an index beyond int64 is CPython's IndexError.
func pyIndex(v any) (i int64, s *pySlice, err error) {
	if i, ok := pyInt(v); ok {
		return i, nil, nil
	}
	if pyBeyondInt64(v) {
		return 0, nil, errIndexSize
	}
	call, ok := v.(ogórek.Call)
	if !ok || call.Callable != pySliceClass || len(call.Args) != 3 {
		return 0, nil, &pyTypeError{fmt.Sprintf("indices must be integers or slices, not %s", pickle.TypeName(v))}
	}
	s = &pySlice{lo: 0, hi: math.MaxInt64, step: 1}
	if call.Args[2] != nil {
		if s.step, ok = pyIntClamped(call.Args[2]); !ok || s.step == 0 {
			return 0, nil, &pyTypeError{"slice step must be a non-zero int"}
		}
	}
	if s.step < 0 {
		s.lo, s.hi = math.MaxInt64, math.MinInt64
	}
	for j, p := range []*int64{&s.lo, &s.hi} {
		if a := call.Args[j]; a != nil {
			if *p, ok = pyIntClamped(a); !ok {
				return 0, nil, &pyTypeError{"slice indices must be integers or None"}
			}
		}
	}
	return 0, s, nil
}

// pick returns the items of all that the slice selects, as Python does.
func (s *pySlice) pick(all []any) []any {
	n := int64(len(all))
	adjust := func(i int64, lo, hi int64) int64 {
		if i < 0 {
			i += n
		}
		return min(max(i, lo), hi)
	}
	var out []any
	// The step is the client's, up to ±2^63: the loops stop before a
	// step would take the index past the end, so that it never wraps.
	if s.step > 0 {
		for i, end := adjust(s.lo, 0, n), adjust(s.hi, 0, n); i < end; i += s.step {
			out = append(out, all[i])
			if s.step >= end-i {
				break
			}
		}
		return out
	}
	lo, hi := s.lo, s.hi
	start := n - 1
	if lo != math.MaxInt64 {
		start = adjust(lo, -1, n-1)
	}
	stop := int64(-1)
	if hi != math.MinInt64 {
		stop = adjust(hi, -1, n-1)
	}
	for i := start; i > stop; i += s.step {
		out = append(out, all[i])
		if s.step <= stop-i {
			break
		}
	}
	return out
}

// contiguous reports whether the slice is a plain range (step 1), which
// the server's slice operations take.
func (s *pySlice) contiguous() bool { return s.step == 1 }

func pyListMethods() map[string]pyMethod {
	m := pyArrayMethods()
	m["__delitem__"] = func(pc *pyCall) {
		if !pc.check(1, "index") {
			return
		}
		i, sl, err := pyIndex(pc.arg(0, "index", nil))
		switch {
		case err != nil:
			pc.fail(err)
		case sl == nil:
			pc.run(opListPop, noTimeout, args1(codec.AppendInt(nil, i)), func(res *opResult) pyMsg {
				if !res.ok && res.code == codeIndex {
					return pyRaise(excIndexError, "list assignment index out of range")
				}
				return okNone(res)
			})
		case !sl.contiguous():
			pc.reply(pyRaise(excValueError, "the mp manager deletes slices of step 1 only"))
		default:
			pc.run(opListSetSlice, noTimeout, [][]byte{codec.AppendInt(nil, sl.lo), codec.AppendInt(nil, sl.hi), encodeArray(nil)}, okNone)
		}
	}
	m["__contains__"] = func(pc *pyCall) {
		if !pc.check(1, "value") {
			return
		}
		if v, _, ok := pc.encArg(0, "value"); ok {
			pc.run(opListIndex, noTimeout, args1(v), func(res *opResult) pyMsg {
				if !res.ok {
					return res.exc()
				}
				return pyReturn(res.int(0) >= 0)
			})
		}
	}
	m["append"] = func(pc *pyCall) {
		if !pc.check(1, "object") {
			return
		}
		if v, _, ok := pc.encArg(0, "object"); ok {
			pc.run(opListAppend, noTimeout, args1(v), okNone)
		}
	}
	m["extend"] = func(pc *pyCall) {
		if !pc.check(1, "iterable") {
			return
		}
		items, err := pyIterable(pc.arg(0, "iterable", nil))
		if err != nil {
			pc.fail(err)
			return
		}
		enc, err := encodePyItems(pc.c, items)
		if err != nil {
			pc.fail(err)
			return
		}
		pc.run(opListExtend, noTimeout, args1(encodeArray(enc)), okNone)
	}
	m["insert"] = func(pc *pyCall) {
		if !pc.check(2, "index", "object") {
			return
		}
		i, ok := pyInt(pc.arg(0, "index", nil))
		if !ok {
			pc.reply(pyIntArg(pc.arg(0, "index", nil), errSsize, "list.insert's index is an int"))
			return
		}
		if v, _, ok := pc.encArg(1, "object"); ok {
			pc.run(opListInsert, noTimeout, [][]byte{codec.AppendInt(nil, i), v}, okNone)
		}
	}
	m["pop"] = func(pc *pyCall) {
		if !pc.check(0, "index") {
			return
		}
		i, ok := pyInt(pc.arg(0, "index", int64(-1)))
		if !ok {
			pc.reply(pyIntArg(pc.arg(0, "index", nil), errSsize, "list.pop's index is an int"))
			return
		}
		pc.run(opListPop, noTimeout, args1(codec.AppendInt(nil, i)), func(res *opResult) pyMsg {
			if !res.ok && res.code == codeIndex {
				return pyRaise(excIndexError, "pop index out of range (or pop from empty list)")
			}
			return retValue(res, 0)
		})
	}
	m["remove"] = func(pc *pyCall) {
		if !pc.check(1, "value") {
			return
		}
		if v, _, ok := pc.encArg(0, "value"); ok {
			pc.run(opListRemove, noTimeout, args1(v), func(res *opResult) pyMsg {
				if res.ok && !res.bool(0) {
					return pyRaise(excValueError, "list.remove(x): x not in list")
				}
				return okNone(res)
			})
		}
	}
	m["index"] = pyListIndex
	m["count"] = func(pc *pyCall) {
		if !pc.check(1, "value") {
			return
		}
		if v, _, ok := pc.encArg(0, "value"); ok {
			pc.run(opListCount, noTimeout, args1(v), func(res *opResult) pyMsg {
				if !res.ok {
					return res.exc()
				}
				return pyReturn(res.int(0))
			})
		}
	}
	m["reverse"] = pySimple(opListReverse, nil)
	m["sort"] = pyListSort
	m["__add__"] = func(pc *pyCall) {
		if !pc.check(1, "value") {
			return
		}
		other, ok := pySeq(pc.arg(0, "value", nil))
		if !ok {
			pc.reply(pyRaise(excTypeError, "can only concatenate list (not \""+pickle.TypeName(pc.arg(0, "value", nil))+"\") to list"))
			return
		}
		pyListAll(pc, func(items []any) pyMsg { return pyReturn(append(items, other...)) })
	}
	mul := func(pc *pyCall) {
		if !pc.check(1, "value") {
			return
		}
		n, ok := pyInt(pc.arg(0, "value", nil))
		if !ok {
			pc.reply(pyIntArg(pc.arg(0, "value", nil), errRepeatSize, "can't multiply sequence by non-int"))
			return
		}
		pyListAll(pc, func(items []any) pyMsg {
			size, ok := repeatLen(len(items), n)
			if !ok {
				return pyRaise(excMemoryError) // as CPython, which cannot allocate it
			}
			out := make([]any, 0, size)
			for len(out) < size {
				out = append(out, items...)
			}
			return pyReturn(out)
		})
	}
	m["__mul__"] = mul
	m["__rmul__"] = mul
	m["__imul__"] = pyListIMul
	m["__reversed__"] = func(pc *pyCall) {
		if pc.check(0) {
			pyListAll(pc, func(items []any) pyMsg {
				slices.Reverse(items)
				return pyReturn(items)
			})
		}
	}
	return m
}

// pyArrayMethods are the methods that an Array shares with a list.
func pyArrayMethods() map[string]pyMethod {
	return map[string]pyMethod{
		"__len__": pySimple(opListLen, func(res *opResult) any { return res.int(0) }),
		"__getitem__": func(pc *pyCall) {
			if !pc.check(1, "index") {
				return
			}
			i, sl, err := pyIndex(pc.arg(0, "index", nil))
			switch {
			case err != nil:
				pc.fail(err)
			case sl == nil:
				pc.run(opListGet, noTimeout, args1(codec.AppendInt(nil, i)), func(res *opResult) pyMsg {
					if !res.ok && res.code == codeIndex {
						return pyRaise(excIndexError, pc.o.kind+" index out of range")
					}
					return retValue(res, 0)
				})
			case sl.contiguous():
				pc.run(opListSlice, noTimeout, [][]byte{codec.AppendInt(nil, sl.lo), codec.AppendInt(nil, sl.hi)}, func(res *opResult) pyMsg {
					return retItems(res, false)
				})
			default:
				pyListAll(pc, func(items []any) pyMsg { return pyReturn(sl.pick(items)) })
			}
		},
		"__setitem__": func(pc *pyCall) {
			if !pc.check(2, "index", "value") {
				return
			}
			i, sl, err := pyIndex(pc.arg(0, "index", nil))
			switch {
			case err != nil:
				pc.fail(err)
			case sl == nil:
				v, _, ok := pc.encArg(1, "value")
				if !ok {
					return
				}
				pc.run(opListSet, noTimeout, [][]byte{codec.AppendInt(nil, i), v}, func(res *opResult) pyMsg {
					if !res.ok && res.code == codeIndex {
						return pyRaise(excIndexError, pc.o.kind+" assignment index out of range")
					}
					return okNone(res)
				})
			case !sl.contiguous():
				pc.reply(pyRaise(excValueError, "the mp manager assigns slices of step 1 only"))
			default:
				items, err := pyIterable(pc.arg(1, "value", nil))
				if err != nil {
					pc.fail(err)
					return
				}
				enc := make([][]byte, len(items))
				for j, it := range items {
					var ok bool
					if enc[j], ok = pc.enc(it); !ok {
						return
					}
				}
				pc.run(opListSetSlice, noTimeout, [][]byte{codec.AppendInt(nil, sl.lo), codec.AppendInt(nil, sl.hi), encodeArray(enc)}, func(res *opResult) pyMsg {
					if !res.ok && res.code == codeIndex {
						return pyRaise(excValueError, res.msg)
					}
					return okNone(res)
				})
			}
		},
	}
}

// pyIntArg is the reply for an argument that had to be an int that fits
// int64: big (CPython's error) for an int beyond int64, else a TypeError
// saying notInt.
func pyIntArg(v any, big *pyExc, notInt string) pyMsg {
	if pyBeyondInt64(v) {
		return pyFail(big)
	}
	return pyRaise(excTypeError, notInt)
}

// pyListAll replies with what fin makes of all the items of the list.
func pyListAll(pc *pyCall, fin func(items []any) pyMsg) {
	pc.run(opListSlice, noTimeout, [][]byte{codec.AppendInt(nil, 0), codec.AppendInt(nil, math.MaxInt64)}, func(res *opResult) pyMsg {
		if !res.ok {
			return res.exc()
		}
		items, err := res.list(0, false)
		if err != nil {
			return pyFail(err)
		}
		return fin(items)
	})
}

// pyListIndex serves index(value[, start[, stop]]).
func pyListIndex(pc *pyCall) {
	if !pc.check(1, "value", "start", "stop") {
		return
	}
	v, _, ok := pc.encArg(0, "value")
	if !ok {
		return
	}
	// As CPython words it: the value's repr (made only if it is not
	// there).
	notIn := func() pyMsg {
		return pyRaise(excValueError, pyRepr(pc.arg(0, "value", nil))+" is not in list")
	}
	if len(pc.args.pos) == 1 && pc.args.nkw() == 0 {
		pc.run(opListIndex, noTimeout, args1(v), func(res *opResult) pyMsg {
			if !res.ok {
				return res.exc()
			}
			if i := res.int(0); i >= 0 {
				return pyReturn(i)
			}
			return notIn()
		})
		return
	}
	// Clamped, as CPython clamps a slice's bounds.
	lo, ok1 := pyIntClamped(pc.arg(1, "start", int64(0)))
	hi, ok2 := pyIntClamped(pc.arg(2, "stop", int64(math.MaxInt64)))
	if !ok1 || !ok2 {
		pc.reply(pyRaise(excTypeError, "slice indices must be integers"))
		return
	}
	l := pc.o.impl.(*listObj)
	var a, i int
	withLock(&l.mu, func() {
		pyLockedHook("index")
		var b int
		a, b = bounds(lo, hi, len(l.items))
		i = slices.IndexFunc(l.items[a:b], func(it []byte) bool { return sameStored(it, v) })
	})
	if i < 0 {
		pc.reply(notIn())
		return
	}
	pc.ret(int64(a + i))
}

// pyListSort sorts the list in the server, as Python compares its items
// (sort(key=None, reverse=False); a key function cannot run here).
func pyListSort(pc *pyCall) {
	if !pc.check(0, "key", "reverse") {
		return
	}
	if pc.arg(0, "key", nil) != nil {
		pc.reply(pyRaise(excTypeError, "the mp manager runs no Python code: sort takes no key"))
		return
	}
	reverse, _ := pyInt(pc.arg(1, "reverse", false))
	// The reply goes once the list is unlocked: a client that reads no
	// replies blocks the send, and must not block the list with it.
	pc.reply(pc.o.impl.(*listObj).pySort(pc.c, reverse != 0))
}

// pySort sorts the items as Python's list.sort does, stably.
func (l *listObj) pySort(c *sconn, reverse bool) pyMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	vals := make([]any, len(l.items))
	for i, it := range l.items {
		v, err := decodePy(c, it)
		if err != nil {
			return pyFail(err)
		}
		vals[i] = v
	}
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	var cmpErr error
	sort.SliceStable(idx, func(i, j int) bool {
		c, err := pyCompare(vals[idx[i]], vals[idx[j]])
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		if reverse {
			c = -c
		}
		return c < 0
	})
	if cmpErr != nil {
		return pyFail(cmpErr)
	}
	sorted := make([][]byte, len(idx))
	for i, j := range idx {
		sorted[i] = l.items[j]
	}
	copy(l.items, sorted)
	return pyReturn(nil)
}

// pyListIMul serves __imul__: the list repeated n times, in place.
func pyListIMul(pc *pyCall) {
	if !pc.check(1, "value") {
		return
	}
	n, ok := pyInt(pc.arg(0, "value", nil))
	if !ok {
		pc.reply(pyIntArg(pc.arg(0, "value", nil), errRepeatSize, "can't multiply sequence by non-int"))
		return
	}
	pc.reply(pc.o.impl.(*listObj).pyRepeat(n)) // unlocked, as pyListSort says
}

// pyRepeat makes the list n copies of itself.
func (l *listObj) pyRepeat(n int64) pyMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range l.items {
		if mayHoldTokens(it) {
			return pyFail(errGoProxy)
		}
	}
	size, ok := repeatLen(len(l.items), n)
	if !ok {
		return pyRaise(excMemoryError) // as CPython, which cannot allocate it
	}
	if size == 0 {
		l.items = nil
		return pyReturn(nil)
	}
	one := l.items
	for len(l.items) < size {
		for _, it := range one {
			l.items = append(l.items, slices.Clone(it))
		}
	}
	return pyReturn(nil)
}

// maxRepeat bounds the items of a list repeated by __mul__ or __imul__:
// past it the server raises MemoryError, as CPython does for a repeat it
// cannot allocate (CPython allocates up to its memory; the server keeps
// to 16 Mi items).
const maxRepeat = 1 << 24

// repeatLen returns the length of n items repeated times times (0 for a
// count of zero or less, as in Python), false past maxRepeat items. The
// count is the client's, up to 2^63-1: the product is never computed
// where it could overflow, and an empty list repeats to nothing without
// a step per count.
func repeatLen(n int, times int64) (int, bool) {
	if n == 0 || times <= 0 {
		return 0, true
	}
	if times > maxRepeat/int64(n) {
		return 0, false
	}
	return n * int(times), true
}

// pyTypecode checks an array typecode.
func pyTypecode(v any) (byte, error) {
	s, _ := v.(string)
	if len(s) == 1 {
		if _, ok := pyIntRanges[s[0]]; ok || s == "f" || s == "d" || s == "u" || s == "w" {
			return s[0], nil
		}
	}
	return 0, &pyValueError{"bad typecode (must be b, B, u, w, h, H, i, I, l, L, q, Q, f or d)"}
}

// pyIntRanges are the ranges of the integer typecodes of Python's array
// module (on 64-bit Linux).
var pyIntRanges = map[byte][2]float64{
	'b': {math.MinInt8, math.MaxInt8}, 'B': {0, math.MaxUint8},
	'h': {math.MinInt16, math.MaxInt16}, 'H': {0, math.MaxUint16},
	'i': {math.MinInt32, math.MaxInt32}, 'I': {0, math.MaxUint32},
	'l': {math.MinInt64, math.MaxInt64}, 'L': {0, math.MaxUint64},
	'q': {math.MinInt64, math.MaxInt64}, 'Q': {0, math.MaxUint64},
}

// coerce encodes v as an item of the array's typecode, as array.array
// converts (floats for f and d, ints in range for the integer codes, one
// character for u and w).
func (l *listObj) coerce(v any) ([]byte, error) {
	switch l.typecode {
	case 'f', 'd':
		f, ok := pyFloat(v)
		if !ok {
			return nil, &pyTypeError{fmt.Sprintf("must be real number, not %s", pickle.TypeName(v))}
		}
		if l.typecode == 'f' {
			f = float64(float32(f))
		}
		return encodePy(nil, f)
	case 'u', 'w':
		if s, ok := v.(string); ok && len([]rune(s)) == 1 {
			return encodePy(nil, s)
		}
		return nil, &pyTypeError{"array item must be a unicode character"}
	}
	r := pyIntRanges[l.typecode]
	f, isNum := pyFloat(v)
	if _, isFloat := v.(float64); isFloat || !isNum {
		return nil, &pyTypeError{fmt.Sprintf("'%s' object cannot be interpreted as an integer", pickle.TypeName(v))}
	}
	if f < r[0] || f > r[1] {
		return nil, &pyTypeError{"array item out of range (OverflowError)"}
	}
	return encodePy(nil, v)
}

// ---- Value and Namespace ----

func pyValueGet(pc *pyCall) {
	if pc.check(0) {
		pc.run(opValueGet, noTimeout, nil, func(res *opResult) pyMsg { return retValue(res, 0) })
	}
}

func pyValueSet(pc *pyCall) {
	if !pc.check(1, "value") {
		return
	}
	if v, _, ok := pc.encArg(0, "value"); ok {
		pc.run(opValueSet, noTimeout, args1(v), okNone)
	}
}

func pyNamespaceMethods() map[string]pyMethod {
	name := func(pc *pyCall) ([]byte, string, bool) {
		s, ok := pc.arg(0, "name", nil).(string)
		if !ok {
			pc.reply(pyRaise(excTypeError, "attribute name must be string"))
			return nil, "", false
		}
		return codec.AppendText(nil, s), s, true
	}
	noAttr := func(s string) pyMsg {
		return pyRaise(excAttributeError, fmt.Sprintf("'Namespace' object has no attribute '%s'", s))
	}
	// A field name, for a change: __class__ and __dict__ are the
	// object's, not fields, as on a CPython server (which raises
	// TypeError for them too).
	field := func(pc *pyCall) ([]byte, string, bool) {
		n, s, ok := name(pc)
		if ok && (s == "__class__" || s == "__dict__") {
			pc.reply(pyRaise(excTypeError, fmt.Sprintf("the mp manager's Namespace cannot change its %s", s)))
			return nil, "", false
		}
		return n, s, ok
	}
	return map[string]pyMethod{
		"__getattribute__": func(pc *pyCall) {
			if !pc.check(1, "name") {
				return
			}
			if n, s, ok := name(pc); ok {
				pc.run(opNsGet, noTimeout, args1(n), func(res *opResult) pyMsg {
					if !res.ok && res.code == codeNoField {
						return noAttr(s)
					}
					return retValue(res, 0)
				})
			}
		},
		"__setattr__": func(pc *pyCall) {
			if !pc.check(2, "name", "value") {
				return
			}
			n, _, ok := field(pc)
			if !ok {
				return
			}
			if v, _, ok := pc.encArg(1, "value"); ok {
				pc.run(opNsSet, noTimeout, [][]byte{n, v}, okNone)
			}
		},
		"__delattr__": func(pc *pyCall) {
			if !pc.check(1, "name") {
				return
			}
			if n, s, ok := field(pc); ok {
				pc.run(opNsDelete, noTimeout, args1(n), func(res *opResult) pyMsg {
					if res.ok && !res.bool(0) {
						return noAttr(s)
					}
					return okNone(res)
				})
			}
		},
	}
}

// ---- Queue ----

// pyBlocking reads the (block, timeout) arguments of a queue's put and
// get, or a lock's acquire, at positions i and i+1: whether to wait, and
// for how long (noTimeout: as long as it takes).
func (pc *pyCall) blocking(i int, blockName, timeoutName string, minusOneForever bool) (bool, time.Duration, bool) {
	block := true
	if v, ok := pc.args.get(i, blockName); ok {
		b, isInt := pyInt(v)
		if !isInt && v != nil {
			pc.reply(pyRaise(excTypeError, blockName+" is a bool"))
			return false, 0, false
		}
		block = b != 0
	}
	tv, given := pc.args.get(i+1, timeoutName)
	if given && tv != nil {
		if f, ok := pyFloat(tv); ok && minusOneForever && f == -1 {
			given = false
		}
	}
	if !given || tv == nil {
		return block, noTimeout, true
	}
	if !block {
		pc.reply(pyRaise(excValueError, "can't specify a timeout for a non-blocking call"))
		return false, 0, false
	}
	t, err := pyTimeout(tv)
	if err != nil {
		pc.fail(err)
		return false, 0, false
	}
	if t < 0 {
		pc.reply(pyRaise(excValueError, "timeout value must be a non-negative number"))
		return false, 0, false
	}
	return true, t, true
}

func pyPut(pc *pyCall, blocking bool) {
	var names = []string{"item", "block", "timeout"}
	if !blocking {
		names = names[:1]
	}
	if !pc.check(1, names...) {
		return
	}
	v, _, ok := pc.encArg(0, "item")
	if !ok {
		return
	}
	block, timeout := false, noTimeout
	if blocking {
		if block, timeout, ok = pc.blocking(1, "block", "timeout", false); !ok {
			return
		}
	}
	op := opQueuePut
	if !block {
		op = opQueueTryPut
	}
	pc.run(op, timeout, args1(v), func(res *opResult) pyMsg {
		if !res.ok && res.code == codeCancelled {
			return pyRaise(excFull)
		}
		return okNone(res)
	})
}

func pyGet(pc *pyCall, blocking bool) {
	var names = []string{"block", "timeout"}
	if !blocking {
		names = nil
	}
	if !pc.check(0, names...) {
		return
	}
	block, timeout, ok := false, noTimeout, true
	if blocking {
		if block, timeout, ok = pc.blocking(0, "block", "timeout", false); !ok {
			return
		}
	}
	op := opQueueGet
	if !block {
		op = opQueueTryGet
	}
	pc.run(op, timeout, nil, func(res *opResult) pyMsg {
		if !res.ok && res.code == codeCancelled {
			return pyRaise(excEmpty)
		}
		return retValue(res, 0)
	})
}

// pyQsize serves qsize and empty.
func pyQsize(pc *pyCall) {
	if !pc.check(0) {
		return
	}
	empty := pc.name == "empty"
	pc.run(opQueueSize, noTimeout, nil, func(res *opResult) pyMsg {
		if !res.ok {
			return res.exc()
		}
		if empty {
			return pyReturn(res.int(0) == 0)
		}
		return pyReturn(res.int(0))
	})
}

// ---- Lock, RLock, Semaphore, BoundedSemaphore, Condition ----

// isLock reports whether the call's object is held by acquire as a lock
// (Lock, RLock, a Condition's lock) rather than counted (a semaphore).
func (pc *pyCall) isLock() bool {
	switch pc.o.kind {
	case kindLock, kindRLock, kindCondition:
		return true
	}
	return false
}

// pyAcquire serves acquire(blocking=True, timeout=-1): True once
// acquired — also when its last holder died holding it —, False if the
// timeout ran out or a non-blocking call found it taken.
func pyAcquire(pc *pyCall) {
	if !pc.check(0, "blocking", "timeout") {
		return
	}
	block, timeout, ok := pc.blocking(0, "blocking", "timeout", true)
	if !ok {
		return
	}
	lock := pc.isLock()
	var op uint64
	var args [][]byte
	switch {
	case lock && block:
		op, args = opLockAcquire, args1(gid0)
	case lock:
		op, args = opLockTryAcquire, args1(gid0)
	case block:
		op = opSemAcquire
	default:
		op = opSemTryAcquire
	}
	pc.run(op, timeout, args, func(res *opResult) pyMsg {
		switch {
		case res.ok && (op == opLockAcquire):
			return pyReturn(true)
		case res.ok:
			return pyReturn(res.bool(0))
		case res.code == codeOwnerDied:
			return pyReturn(true)
		case res.code == codeCancelled:
			return pyReturn(false)
		}
		return res.exc()
	})
}

// pyRelease serves release() (and a semaphore's release(n=1)).
func pyRelease(pc *pyCall) {
	if !pc.isLock() {
		if !pc.check(0, "n") {
			return
		}
		n, ok := pyIntClamped(pc.arg(0, "n", int64(1)))
		if !ok || n < 1 {
			pc.reply(pyRaise(excValueError, "n must be one or more"))
			return
		}
		// One operation for the n units (all or none), as in Python.
		if res := pc.now(opSemRelease, [][]byte{codec.AppendInt(nil, n)}); !res.ok {
			pc.reply(pyRaise(excValueError, "Semaphore released too many times"))
			return
		}
		pc.ret(nil)
		return
	}
	if !pc.check(0) {
		return
	}
	pc.run(opLockRelease, noTimeout, args1(gid0), func(res *opResult) pyMsg {
		if !res.ok && res.code == codeNotHeld {
			if pc.o.kind == kindLock {
				return pyRaise(excRuntimeError, "release unlocked lock")
			}
			return pyRaise(excRuntimeError, "cannot release un-acquired lock")
		}
		return okNone(res)
	})
}

// timeoutOnly reads the one argument of a wait(timeout=None): false if
// the call had other arguments or a timeout that is not a number, which
// has been answered with the error. A timeout of zero or less does not
// wait, as in Python (Condition, Event and Barrier wait only while their
// timeout is above zero): it is 0, not noTimeout.
func (pc *pyCall) timeoutOnly() (time.Duration, bool) {
	if !pc.check(0, "timeout") {
		return 0, false
	}
	v := pc.arg(0, "timeout", nil)
	t, err := pyTimeout(v)
	if err != nil {
		pc.fail(err)
		return 0, false
	}
	if v != nil && t < 0 {
		t = 0
	}
	return t, true
}

// pyCondWait serves a Condition's wait(timeout=None): True if notified,
// False if the timeout ran out; the lock is held again either way.
func pyCondWait(pc *pyCall) {
	t, ok := pc.timeoutOnly()
	if !ok {
		return
	}
	pc.run(opCondWait, max(t, noTimeout), args1(gid0), func(res *opResult) pyMsg {
		switch {
		case res.ok, res.code == codeOwnerDied:
			return pyReturn(true)
		case res.code == codeCancelled:
			return pyReturn(false)
		case res.code == codeNotHeld:
			return pyRaise(excRuntimeError, "cannot wait on un-acquired lock")
		}
		return res.exc()
	})
}

// pyNotify serves notify(n=1) and notify_all().
func pyNotify(pc *pyCall) {
	n := int64(-1)
	if pc.name == "notify" {
		if !pc.check(0, "n") {
			return
		}
		var ok bool
		if n, ok = pyIntClamped(pc.arg(0, "n", int64(1))); !ok {
			pc.reply(pyRaise(excTypeError, "n is an int"))
			return
		}
		if n <= 0 {
			pc.ret(nil)
			return
		}
	} else if !pc.check(0) {
		return
	}
	pc.run(opCondNotify, noTimeout, [][]byte{gid0, codec.AppendInt(nil, n)}, func(res *opResult) pyMsg {
		if !res.ok && res.code == codeNotHeld {
			return pyRaise(excRuntimeError, "cannot notify on un-acquired lock")
		}
		return okNone(res)
	})
}

// ---- Event and Barrier ----

// pyEventWait serves wait(timeout=None): whether the event is set.
func pyEventWait(pc *pyCall) {
	t, ok := pc.timeoutOnly()
	if !ok {
		return
	}
	pc.run(opEventWait, t, nil, func(res *opResult) pyMsg {
		switch {
		case res.ok:
			return pyReturn(true)
		case res.code == codeCancelled:
			return pyReturn(false)
		}
		return res.exc()
	})
}

// pyBarrierWait serves wait(timeout=None): the caller's index, or
// BrokenBarrierError (a timeout breaks the barrier, as in Python).
func pyBarrierWait(pc *pyCall) {
	t, ok := pc.timeoutOnly()
	if !ok {
		return
	}
	pc.run(opBarrierWait, t, nil, func(res *opResult) pyMsg {
		switch {
		case res.ok:
			return pyReturn(res.int(0))
		case res.code == codeCancelled:
			return pyRaise(excBrokenBarrier)
		}
		return res.exc()
	})
}

// pyBarrierAttr serves the properties parties, n_waiting and broken.
func pyBarrierAttr(pc *pyCall) {
	if !pc.check(1, "name") {
		return
	}
	name, _ := pc.arg(0, "name", nil).(string)
	pc.run(opBarrierInfo, noTimeout, nil, func(res *opResult) pyMsg {
		if !res.ok {
			return res.exc()
		}
		switch name {
		case "parties":
			return pyReturn(res.int(0))
		case "n_waiting":
			return pyReturn(res.int(1))
		case "broken":
			return pyReturn(res.bool(2))
		}
		return pyRaise(excAttributeError, fmt.Sprintf("'Barrier' attribute %q is not served by the mp manager", name))
	})
}

//go:build linux

package manager

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
)

// The typeids of CPython's SyncManager and the methods of their proxies,
// served on the server's own objects (see py.go).

// pyKinds maps SyncManager's typeids to the kinds of objects that serve
// them. Queue and JoinableQueue are both queue.Queue in CPython, with
// task_done and join: both are joinable here.
var pyKinds = map[string]string{
	"dict": kindDict, "list": kindList, "Value": kindValue, "Array": kindArray,
	"Namespace": kindNamespace, "Queue": kindJoinableQueue, "JoinableQueue": kindJoinableQueue,
	"Lock": kindLock, "RLock": kindRLock, "Semaphore": kindSemaphore,
	"BoundedSemaphore": kindBounded, "Condition": kindCondition, "Event": kindEvent,
	"Barrier": kindBarrier,
}

// kindIterator is the kind of the iterators that a dict's __iter__
// returns to Python clients.
const kindIterator = "iterator"

// pyExposedOf lists, by kind, the methods a Python proxy may call: those
// of CPython's proxy of the same type (or public_methods of the object,
// for Queue's AutoProxy), which an AutoProxy — a client that registered
// get_NAME for a named object — uses as its methods.
var pyExposedOf = map[string][]string{
	kindDict: {"__contains__", "__delitem__", "__getitem__", "__iter__", "__len__",
		"__setitem__", "clear", "copy", "get", "items", "keys", "pop", "popitem",
		"setdefault", "update", "values"},
	kindList: {"__add__", "__contains__", "__delitem__", "__getitem__", "__len__",
		"__mul__", "__reversed__", "__rmul__", "__setitem__", "append", "count",
		"extend", "index", "insert", "pop", "remove", "reverse", "sort", "__imul__"},
	kindValue:         {"get", "set"},
	kindArray:         {"__len__", "__getitem__", "__setitem__"},
	kindNamespace:     {"__getattribute__", "__setattr__", "__delattr__"},
	kindQueue:         {"empty", "full", "get", "get_nowait", "put", "put_nowait", "qsize"},
	kindJoinableQueue: {"empty", "full", "get", "get_nowait", "join", "put", "put_nowait", "qsize", "task_done"},
	kindLock:          {"acquire", "release"},
	kindRLock:         {"acquire", "release"},
	kindSemaphore:     {"acquire", "release"},
	kindBounded:       {"acquire", "release"},
	kindCondition:     {"acquire", "release", "wait", "notify", "notify_all"},
	kindEvent:         {"is_set", "set", "clear", "wait"},
	kindBarrier:       {"__getattribute__", "wait", "abort", "reset"},
	kindIterator:      {"__next__", "send", "throw", "close"},
}

// pyExposed is the tuple of o's exposed methods.
func pyExposed(o *object) ogórek.Tuple { return pyExposedTuple(o.kind) }

// pyExposedTuple is the tuple of the exposed methods of kind, as a client
// is told them, without the attribute hooks (__getattribute__,
// __setattr__, __delattr__): the proxy types that call them
// (BarrierProxy, NamespaceProxy) do not read the list, and an AutoProxy,
// which defines a method for each name listed, would send its own
// attribute lookups to the server (its construction then recursed until
// Python gave up). The server still serves them.
func pyExposedTuple(kind string) ogórek.Tuple {
	names := pyExposedOf[kind]
	t := make(ogórek.Tuple, 0, len(names))
	for _, n := range names {
		if !pyAttrHooks[n] {
			t = append(t, n)
		}
	}
	return t
}

// pyAttrHooks are the methods of Python's attribute access.
var pyAttrHooks = map[string]bool{"__getattribute__": true, "__setattr__": true, "__delattr__": true}

// A pyMethod serves one method: it replies itself, at once or when its
// operation ends (pyCall.run).
type pyMethod func(pc *pyCall)

// pyMethodsOf returns the methods of o's kind.
func pyMethodsOf(o *object) map[string]pyMethod {
	pyMethodsOnce.Do(initPyMethods)
	return pyMethods[o.kind]
}

var (
	pyMethodsOnce sync.Once
	pyMethods     map[string]map[string]pyMethod
)

func initPyMethods() {
	acquirer := func() map[string]pyMethod { return map[string]pyMethod{"acquire": pyAcquire, "release": pyRelease} }
	queue := func() map[string]pyMethod {
		return map[string]pyMethod{
			"put":        func(pc *pyCall) { pyPut(pc, true) },
			"put_nowait": func(pc *pyCall) { pyPut(pc, false) },
			"get":        func(pc *pyCall) { pyGet(pc, true) },
			"get_nowait": func(pc *pyCall) { pyGet(pc, false) },
			"qsize":      pyQsize,
			"empty":      pyQsize,
			"full":       pySimple(opQueueFull, func(res *opResult) any { return res.bool(0) }),
			"task_done":  pySimple(opQueueTaskDone, nil),
			"join":       func(pc *pyCall) { pc.run(opQueueJoin, noTimeout, nil, okNone) },
		}
	}
	pyMethods = map[string]map[string]pyMethod{
		kindDict:          pyDictMethods(),
		kindList:          pyListMethods(),
		kindArray:         pyArrayMethods(),
		kindValue:         {"get": pyValueGet, "set": pyValueSet},
		kindNamespace:     pyNamespaceMethods(),
		kindQueue:         queue(),
		kindJoinableQueue: queue(),
		kindLock:          acquirer(),
		kindRLock:         acquirer(),
		kindSemaphore:     acquirer(),
		kindBounded:       acquirer(),
		kindCondition: {"acquire": pyAcquire, "release": pyRelease, "wait": pyCondWait,
			"notify": pyNotify, "notify_all": pyNotify},
		kindEvent: {
			"is_set": pySimple(opEventIsSet, func(res *opResult) any { return res.bool(0) }),
			"set":    pySimple(opEventSet, nil),
			"clear":  pySimple(opEventClear, nil),
			"wait":   pyEventWait,
		},
		kindBarrier: {"wait": pyBarrierWait, "abort": pySimple(opBarrierAbort, nil),
			"reset": pySimple(opBarrierReset, nil), "__getattribute__": pyBarrierAttr},
		kindIterator: pyIteratorMethods(),
	}
	// Only the exposed methods are served (a kind's table may hold
	// methods of another kind that shares it: a plain Queue has no join).
	for kind, ms := range pyMethods {
		for name := range ms {
			if indexOf(pyExposedOf[kind], name) < 0 {
				delete(ms, name)
			}
		}
	}
}

// okNone makes None of a successful result, and the exception of a
// failed one.
func okNone(res *opResult) pyMsg {
	if !res.ok {
		return res.exc()
	}
	return pyReturn(nil)
}

// pySimple is a method without arguments that runs op and returns what
// conv makes of its result (None if conv is nil).
func pySimple(op uint64, conv func(res *opResult) any) pyMethod {
	return func(pc *pyCall) {
		if !pc.check(0) {
			return
		}
		pc.run(op, noTimeout, nil, func(res *opResult) pyMsg {
			if !res.ok || conv == nil {
				return okNone(res)
			}
			return pyReturn(conv(res))
		})
	}
}

// ---- create ----

// pyCreate serves "create": (typeid, *args, **kwds). A typeid get_NAME
// (registered by the client with BaseManager.register, without a
// callable) returns the object named NAME (see Named), whatever its kind.
func (c *sconn) pyCreate(a *pyArgs) pyMsg {
	s := c.s
	if len(a.pos) < 1 {
		return pyRaise(excTypeError, "create() needs a typeid")
	}
	typeid, _ := a.pos[0].(string)
	args := &pyArgs{pos: a.pos[1:], kw: a.kw}
	kind, ok := pyKinds[typeid]
	if !ok {
		if name, ok := strings.CutPrefix(typeid, "get_"); ok && name != "" {
			return s.pyNamed(name, args)
		}
		return pyRaise(excValueError, fmt.Sprintf("typeid %q is not served by the mp manager (it serves SyncManager's types and get_NAME for named objects)", typeid))
	}
	im, err := c.pyNewImpl(typeid, kind, args)
	if err != nil {
		return pyFail(err)
	}
	o := s.pyAdd(kind, im)
	return pyReturn(ogórek.Tuple{pyIdentOf(o.id), pyExposed(o)})
}

// pyNamed returns the object named name, with a Python reference.
func (s *Server) pyNamed(name string, a *pyArgs) pyMsg {
	if len(a.pos) > 0 || a.nkw() > 0 {
		return pyRaise(excTypeError, "get_"+name+"() takes no arguments")
	}
	s.namesMu.Lock()
	defer s.namesMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[s.names[name]]
	if o == nil {
		return pyRaise(excKeyError, fmt.Sprintf("no object named %q in the manager", name))
	}
	if _, ok := pyExposedOf[o.kind]; !ok || o.kind == kindIterator {
		return pyRaise(excTypeError, fmt.Sprintf("%q names a %s, which Python clients cannot use", name, o.kind))
	}
	o.refs++
	o.pyrefs++
	return pyReturn(ogórek.Tuple{pyIdentOf(o.id), pyExposed(o)})
}

// pyNewImpl makes the object for typeid, with the arguments of the
// callable CPython registers for it.
func (c *sconn) pyNewImpl(typeid, kind string, a *pyArgs) (impl, error) {
	s := c.s
	x := &call{s: s, r: &reply{s: s}}
	x.r.reset()
	switch typeid {
	case "dict":
		d := &dictObj{idx: map[string]int{}}
		pairs, err := pyPairs(c, a)
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			d.set(x, p[0], p[1])
		}
		return d, nil
	case "list":
		if err := a.check("list", 0, "iterable"); err != nil {
			return nil, err
		}
		items, err := pyIterable(pc0(a, 0, "iterable"))
		if err != nil {
			return nil, err
		}
		enc, err := encodePyItems(c, items)
		if err != nil {
			return nil, err
		}
		return &listObj{items: enc}, nil
	case "Value":
		if err := a.check("Value", 2, "typecode", "value", "lock"); err != nil {
			return nil, err
		}
		v, _ := a.get(1, "value")
		b, err := encodePy(c, v)
		if err != nil {
			return nil, err
		}
		return &valueObj{v: b}, nil
	case "Array":
		if err := a.check("Array", 2, "typecode", "sequence", "lock"); err != nil {
			return nil, err
		}
		tc, _ := a.get(0, "typecode")
		code, err := pyTypecode(tc)
		if err != nil {
			return nil, err
		}
		seq, _ := a.get(1, "sequence")
		items, err := pyIterable(seq)
		if err != nil {
			return nil, err
		}
		l := &listObj{fixed: true, typecode: code}
		for _, it := range items {
			b, err := l.coerce(it)
			if err != nil {
				return nil, err
			}
			l.items = append(l.items, b)
		}
		return l, nil
	case "Namespace":
		if len(a.pos) > 0 {
			return nil, &pyTypeError{"Namespace() takes keyword arguments only"}
		}
		n := &nsObj{fields: map[string][]byte{}}
		if a.nkw() > 0 {
			for k, v := range a.kw.All() {
				b, err := encodePy(c, v)
				if err != nil {
					return nil, err
				}
				n.fields[k.(string)] = b
			}
		}
		return n, nil
	case "Queue", "JoinableQueue":
		if err := a.check(typeid, 0, "maxsize"); err != nil {
			return nil, err
		}
		// Any int: beyond int64 it is a bound no queue reaches, or none.
		n, ok := pyIntClamped(pc0(a, 0, "maxsize"))
		if v, given := a.get(0, "maxsize"); given && !ok {
			return nil, &pyTypeError{fmt.Sprintf("maxsize is an int, not %s", pickle.TypeName(v))}
		}
		return &queueObj{maxsize: int(min(max(n, 0), math.MaxInt32)), joinable: true, gone: newGone()}, nil
	case "Lock", "RLock", "Event":
		if err := a.check(typeid, 0); err != nil {
			return nil, err
		}
		if kind == kindEvent {
			return &eventObj{gone: newGone()}, nil
		}
		return &lockObj{reentrant: kind == kindRLock, gone: newGone()}, nil
	case "Semaphore", "BoundedSemaphore":
		if err := a.check(typeid, 0, "value"); err != nil {
			return nil, err
		}
		n := int64(1)
		if v, given := a.get(0, "value"); given {
			var err error
			if n, err = pyIntIn(v, 0, mp.MaxSemaphoreValue, "semaphore initial value"); err != nil {
				return nil, err
			}
		}
		sem := &semObj{value: int(n), bound: int(n), bounded: kind == kindBounded, gone: newGone()}
		if sem.bounded {
			sem.held = map[*session]*semHeld{}
		}
		return sem, nil
	case "Condition":
		if err := a.check(typeid, 0, "lock"); err != nil {
			return nil, err
		}
		lockArg := pc0(a, 0, "lock")
		if lockArg == nil {
			return &condObj{lock: &lockObj{reentrant: true, gone: newGone()}, gone: newGone()}, nil
		}
		// Condition(m.Lock()): the proxy of a Lock or RLock of this server.
		call, _ := lockArg.(ogórek.Call)
		var o *object
		if len(call.Args) == 4 && call.Callable == pyRebuildProxy {
			if id, ok := tokenIdent(call.Args[1]); ok {
				o = s.lookup(id)
			}
		}
		var l *lockObj
		if o != nil {
			l, _ = o.impl.(*lockObj)
		}
		if l == nil {
			return nil, &pyTypeError{"a Condition's lock must be a Lock or an RLock of the same manager"}
		}
		s.incref(o.id)
		return &condObj{lock: l, lockID: o.id, gone: newGone()}, nil
	case "Barrier":
		if err := a.check(typeid, 1, "parties", "action", "timeout"); err != nil {
			return nil, err
		}
		n, err := pyIntIn(pc0(a, 0, "parties"), 1, math.MaxInt32, "parties")
		if err != nil {
			return nil, err
		}
		if pc0(a, 1, "action") != nil {
			return nil, &pyTypeError{"the mp manager runs no Python code: a Barrier has no action"}
		}
		t, err := pyTimeout(pc0(a, 2, "timeout"))
		if err != nil {
			return nil, err
		}
		b := &barrierObj{parties: int(n), changed: make(chan struct{}), gone: newGone()}
		if t > 0 {
			b.timeout = t
		}
		return b, nil
	}
	return nil, &pyTypeError{"typeid " + typeid + " is not served"}
}

// pc0 returns argument i (or keyword name) of a, nil if not given.
func pc0(a *pyArgs, i int, name string) any {
	v, _ := a.get(i, name)
	return v
}

// pyIterable returns the items of a list, tuple, set, str... that a
// client sent as an iterable (nil: none).
func pyIterable(v any) ([]any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return v, nil
	case ogórek.Tuple:
		return v, nil
	case *pickle.Dict:
		keys := make([]any, 0, v.Len())
		for k := range v.All() {
			keys = append(keys, k)
		}
		return keys, nil
	case ogórek.Bytes:
		items := make([]any, len(v))
		for i := range len(v) {
			items[i] = int64(v[i])
		}
		return items, nil
	case string:
		var items []any
		for _, r := range v {
			items = append(items, string(r))
		}
		return items, nil
	case pickle.Set:
		return v, nil
	case pickle.FrozenSet:
		return v, nil
	case ogórek.Call:
		if v.Callable == pyRangeClass {
			return pyRange(v.Args)
		}
	}
	return nil, &pyTypeError{fmt.Sprintf("'%s' object is not iterable by the mp manager", pickle.TypeName(v))}
}

// maxRange bounds the items a range sent as an iterable expands to.
const maxRange = 1 << 24

// pyRange expands range(start, stop, step), as a range pickles.
func pyRange(args ogórek.Tuple) ([]any, error) {
	var a [3]int64
	if len(args) != 3 {
		return nil, &pyTypeError{"a malformed range"}
	}
	for i, v := range args {
		var ok bool
		if a[i], ok = pyInt(v); !ok || i == 2 && a[i] == 0 {
			return nil, &pyTypeError{"a malformed range"}
		}
	}
	start, stop, step := a[0], a[1], a[2]
	// The span as unsigned is exact (it is below 2^64); so is the count.
	var span, stride uint64
	switch {
	case step > 0 && stop > start:
		span, stride = uint64(stop)-uint64(start), uint64(step)
	case step < 0 && stop < start:
		span, stride = uint64(start)-uint64(stop), -uint64(step)
	}
	var n uint64
	if stride > 0 {
		n = span / stride
		if span%stride != 0 {
			n++
		}
	}
	if n > maxRange {
		return nil, &pyValueError{fmt.Sprintf("a range of more than %d items", maxRange)}
	}
	items := make([]any, n)
	for i := range items {
		items[i] = start + int64(i)*step
	}
	return items, nil
}

// pyPairs returns the encoded (key, value) pairs of dict(*args, **kwds)
// or update's arguments, in the order Python would set them: the
// positional dict's or iterable's, then the keywords'.
func pyPairs(c *sconn, a *pyArgs) ([][2][]byte, error) {
	var pairs [][2][]byte
	add := func(k, v any) error {
		kb, err := encodePy(c, k)
		if err != nil {
			return err
		}
		vb, err := encodePy(c, v)
		if err != nil {
			return err
		}
		pairs = append(pairs, [2][]byte{kb, vb})
		return nil
	}
	if len(a.pos) > 1 {
		return nil, &pyTypeError{fmt.Sprintf("expected at most 1 argument, got %d", len(a.pos))}
	}
	if len(a.pos) == 1 {
		switch v := a.pos[0].(type) {
		case *pickle.Dict:
			for k, val := range v.All() {
				if err := add(k, val); err != nil {
					return nil, err
				}
			}
		default:
			items, err := pyIterable(v)
			if err != nil {
				return nil, err
			}
			for _, it := range items {
				kv, ok := pySeq(it)
				if !ok || len(kv) != 2 {
					return nil, &pyTypeError{"dictionary update sequence element is not a pair"}
				}
				if err := add(kv[0], kv[1]); err != nil {
					return nil, err
				}
			}
		}
	}
	if a.nkw() > 0 {
		for k, v := range a.kw.All() {
			if err := add(k, v); err != nil {
				return nil, err
			}
		}
	}
	return pairs, nil
}

// encodePairs encodes pairs as the argument of opDictUpdate.
func encodePairs(pairs [][2][]byte) []byte {
	b := codec.AppendHead(nil, codec.MajorArray, uint64(len(pairs)))
	for _, p := range pairs {
		b = codec.AppendHead(b, codec.MajorArray, 2)
		b = append(append(b, p[0]...), p[1]...)
	}
	return b
}

// encodeArray encodes items (already encoded) as an array.
func encodeArray(items [][]byte) []byte {
	b := codec.AppendHead(nil, codec.MajorArray, uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

// ---- fallbacks ----

// pyRepr is the repr of a Namespace, as CPython's: Namespace(name=value,
// ...) of its fields whose names do not start with "_", the name=value
// strings sorted.
func (n *nsObj) pyRepr(c *sconn) pyMsg {
	var items []string
	var err error
	withLock(&n.mu, func() {
		pyLockedHook("__repr__")
		for name, b := range n.fields {
			if strings.HasPrefix(name, "_") {
				continue
			}
			var v any
			if v, err = decodePy(c, b); err != nil {
				return
			}
			items = append(items, name+"="+pyRepr(v))
		}
	})
	if err != nil {
		return pyFail(err)
	}
	slices.Sort(items)
	return pyReturn("Namespace(" + strings.Join(items, ", ") + ")")
}

// pyFallback serves "#GETVALUE" (a copy of the object, for the kinds that
// have one), "__repr__" and "__str__".
func pyFallback(pc *pyCall) {
	o := pc.o
	repr := pc.name != "#GETVALUE"
	// fin makes a reply of the copy: the copy, or its repr.
	fin := func(v any, prefix, suffix string) pyMsg {
		if repr {
			return pyReturn(prefix + pyRepr(v) + suffix)
		}
		return pyReturn(v)
	}
	switch o.kind {
	case kindDict:
		pyDictCopy(pc, func(d any) pyMsg { return fin(d, "", "") })
	case kindList:
		pyListAll(pc, func(items []any) pyMsg { return fin(items, "", "") })
	case kindArray:
		pyListAll(pc, func(items []any) pyMsg { return fin(items, "array(", ")") })
	case kindValue:
		pc.run(opValueGet, noTimeout, nil, func(res *opResult) pyMsg {
			if !res.ok {
				return res.exc()
			}
			v, err := res.value(0)
			if err != nil {
				return pyFail(err)
			}
			return fin(v, "Value(", ")")
		})
	case kindNamespace:
		if repr {
			pc.reply(pc.o.impl.(*nsObj).pyRepr(pc.c))
			return
		}
		fallthrough
	case kindQueue, kindJoinableQueue, kindLock, kindRLock, kindSemaphore,
		kindBounded, kindCondition, kindEvent, kindBarrier, kindIterator:
		if repr {
			pc.ret(fmt.Sprintf("<mp manager %s %s>", o.kind, pyIdentOf(o.id)))
			return
		}
		fallthrough
	default:
		pc.reply(pyRaise(excTypeError, fmt.Sprintf("a %s has no value to copy", o.kind)))
	}
}

//go:build linux

package manager

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
)

// create serves opCreate: [kind, name or null, arguments...]. A named
// object is looked up first, and made only if the name is free; the reply
// is [0, id, created].
func (s *Server) create(x *call) {
	r := x.r
	if len(x.args) < 2 {
		r.fail(codeProtocol, "manager: create without a kind")
		return
	}
	kind, err := codec.ReadText(x.args[0])
	if err != nil {
		r.fail(codeProtocol, "manager: bad kind")
		return
	}
	var name string
	if !codec.IsNull(x.args[1]) {
		if name, err = codec.ReadText(x.args[1]); err != nil || name == "" {
			r.fail(codeProtocol, "manager: bad object name")
			return
		}
	}
	args := x.args[2:]
	if name != "" {
		s.namesMu.Lock()
		defer s.namesMu.Unlock()
		s.mu.RLock()
		o := s.objects[s.names[name]]
		s.mu.RUnlock()
		if o != nil {
			if o.kind != kind {
				r.fail(codeExists, fmt.Sprintf("manager: %q names a %s, not a %s", name, o.kind, kind))
				return
			}
			if !s.sessionRef(x.sess, o) {
				r.fail(codeNoObject, "manager: object released")
				return
			}
			r.ok()
			r.uint(o.id)
			r.bool(false)
			return
		}
	}
	im, errCode, msg := s.newImpl(x, kind, args)
	if im == nil {
		r.fail(errCode, msg)
		return
	}
	var id uint64
	if c, ok := im.(*customObj); ok {
		// newFn may return an instance already served.
		id = s.serveInstance(x.sess, c.ti, c.v, name)
		if h := testHookInstanceServed.Load(); h != nil {
			(*h)(s, x.sess, id)
		}
	} else {
		id = s.add(kind, im, x.sess, name).id
	}
	r.ok()
	r.uint(id)
	r.bool(true)
}

func (s *Server) newImpl(x *call, kind string, args [][]byte) (impl, uint64, string) {
	nargs := func(n int) bool { return len(args) == n }
	bad := func() (impl, uint64, string) {
		return nil, codeProtocol, fmt.Sprintf("manager: bad arguments to create a %s", kind)
	}
	switch kind {
	case kindDict:
		return &dictObj{idx: map[string]int{}}, 0, ""
	case kindNamespace:
		return &nsObj{fields: map[string][]byte{}}, 0, ""
	case kindList, kindArray:
		l := &listObj{fixed: kind == kindArray}
		if nargs(1) {
			items, _, err := codec.SplitArray(nil, args[0])
			if err != nil {
				return bad()
			}
			for _, it := range items {
				l.items = append(l.items, bytes.Clone(it))
				s.stored(it)
			}
		} else if !nargs(0) {
			return bad()
		}
		return l, 0, ""
	case kindValue:
		if !nargs(1) {
			return bad()
		}
		s.stored(args[0])
		return &valueObj{v: bytes.Clone(args[0])}, 0, ""
	case kindQueue, kindJoinableQueue:
		if !nargs(1) {
			return bad()
		}
		n, err := codec.ReadInt(args[0])
		if err != nil || n < 0 {
			return bad()
		}
		return &queueObj{maxsize: int(min(n, math.MaxInt32)), joinable: kind == kindJoinableQueue, gone: newGone()}, 0, ""
	case kindLock, kindRLock:
		return &lockObj{reentrant: kind == kindRLock, gone: newGone()}, 0, ""
	case kindSemaphore, kindBounded:
		if !nargs(1) {
			return bad()
		}
		n, err := codec.ReadInt(args[0])
		if err != nil || n < 0 || n > mp.MaxSemaphoreValue {
			return nil, codeProtocol, fmt.Sprintf("manager: semaphore value out of range [0, %d]", mp.MaxSemaphoreValue)
		}
		sem := &semObj{value: int(n), bound: int(n), bounded: kind == kindBounded, gone: newGone()}
		if sem.bounded {
			sem.held = map[*session]*semHeld{}
		}
		return sem, 0, ""
	case kindEvent:
		return &eventObj{gone: newGone()}, 0, ""
	case kindCondition:
		if !nargs(1) {
			return bad()
		}
		c := &condObj{gone: newGone()}
		if codec.IsNull(args[0]) {
			c.lock = &lockObj{reentrant: true, gone: newGone()}
			return c, 0, ""
		}
		id, _, err := codec.ReadUint(args[0])
		if err != nil {
			return bad()
		}
		lo := s.lookup(id)
		l, ok := (*lockObj)(nil), false
		if lo != nil {
			l, ok = lo.impl.(*lockObj)
		}
		if !ok {
			return nil, codeWrongKind, "manager: a Condition's lock must be a Lock or an RLock of the same manager"
		}
		s.incref(id)
		c.lock, c.lockID = l, id
		return c, 0, ""
	case kindBarrier:
		if !nargs(2) {
			return bad()
		}
		n, err1 := codec.ReadInt(args[0])
		t, err2 := codec.ReadInt(args[1])
		if err1 != nil || err2 != nil || n < 1 || n > math.MaxInt32 || t < 0 {
			return nil, codeProtocol, "manager: bad barrier parties or timeout"
		}
		return &barrierObj{parties: int(n), timeout: time.Duration(t), changed: make(chan struct{}), gone: newGone()}, 0, ""
	}
	ti := lookupType(kind)
	if ti == nil {
		return nil, codeUnknownType, fmt.Sprintf("manager: no type %q is registered in the server", kind)
	}
	if !nargs(1) {
		return bad()
	}
	return ti.create(x, args[0])
}

// ---- Dict ----

// dictObj is an insertion-ordered map from encoded keys to encoded values,
// as Python's dict keeps its order.
type dictObj struct {
	mu   sync.Mutex
	idx  map[string]int // key → index in ents
	ents []dictEnt
	dead int // deleted entries in ents
}

type dictEnt struct {
	key  string
	val  []byte
	live bool
}

func (d *dictObj) free() ([][]byte, []uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var vals [][]byte
	for _, e := range d.ents {
		if e.live {
			vals = append(vals, []byte(e.key), e.val)
		}
	}
	d.idx, d.ents = map[string]int{}, nil
	return vals, nil
}

// set stores v under k and returns the value it replaced, if any.
func (d *dictObj) set(x *call, k, v []byte) {
	x.s.stored(v)
	if i, ok := d.idx[string(k)]; ok {
		e := &d.ents[i]
		if mayHoldTokens(e.val) {
			x.r.drop(e.val)
			e.val = nil
		}
		e.val = append(e.val[:0], v...)
		return
	}
	x.s.stored(k)
	d.idx[string(k)] = len(d.ents)
	d.ents = append(d.ents, dictEnt{key: string(k), val: bytes.Clone(v), live: true})
}

func (d *dictObj) remove(x *call, i int) {
	e := &d.ents[i]
	delete(d.idx, e.key)
	x.r.drop([]byte(e.key))
	x.r.drop(e.val)
	*e = dictEnt{}
	d.dead++
	if d.dead > 32 && d.dead > len(d.ents)/2 {
		d.compact()
	}
}

func (d *dictObj) compact() {
	live := d.ents[:0]
	for _, e := range d.ents {
		if e.live {
			d.idx[e.key] = len(live)
			live = append(live, e)
		}
	}
	clear(d.ents[len(live):])
	d.ents, d.dead = live, 0
}

func (d *dictObj) handle(x *call) waitFn {
	r := x.r
	d.mu.Lock()
	defer d.mu.Unlock()
	switch x.op {
	case opDictGet:
		if !x.need(1) {
			return nil
		}
		r.ok()
		if i, ok := d.idx[string(x.args[0])]; ok {
			r.bool(true)
			r.value(d.ents[i].val)
		} else {
			r.bool(false)
		}
	case opDictSet:
		if !x.need(2) {
			return nil
		}
		d.set(x, x.args[0], x.args[1])
		r.ok()
	case opDictDelete, opDictPop:
		if !x.need(1) {
			return nil
		}
		r.ok()
		i, ok := d.idx[string(x.args[0])]
		r.bool(ok)
		if ok {
			if x.op == opDictPop {
				r.value(d.ents[i].val)
			}
			d.remove(x, i)
		}
	case opDictContains:
		if !x.need(1) {
			return nil
		}
		_, ok := d.idx[string(x.args[0])]
		r.ok()
		r.bool(ok)
	case opDictLen:
		r.ok()
		r.int(len(d.idx))
	case opDictKeys, opDictValues, opDictItems:
		r.ok()
		r.array(len(d.idx))
		for _, e := range d.ents {
			if !e.live {
				continue
			}
			switch x.op {
			case opDictKeys:
				r.elem([]byte(e.key))
			case opDictValues:
				r.elem(e.val)
			default:
				r.buf = codec.AppendHead(r.buf, 4, 2)
				r.elem([]byte(e.key))
				r.elem(e.val)
			}
		}
	case opDictUpdate:
		if !x.need(1) {
			return nil
		}
		pairs, _, err := codec.SplitArray(nil, x.args[0])
		if err != nil {
			r.fail(codeProtocol, "manager: bad items")
			return nil
		}
		for _, p := range pairs {
			var kv [2][]byte
			if items, _, err := codec.SplitArray(kv[:0], p); err != nil || len(items) != 2 {
				r.fail(codeProtocol, "manager: bad item")
				return nil
			}
		}
		for _, p := range pairs {
			var kv [2][]byte
			items, _, _ := codec.SplitArray(kv[:0], p)
			d.set(x, items[0], items[1])
		}
		r.ok()
	case opDictSetDefault:
		if !x.need(2) {
			return nil
		}
		if _, ok := d.idx[string(x.args[0])]; !ok {
			d.set(x, x.args[0], x.args[1])
		}
		r.ok()
		r.value(d.ents[d.idx[string(x.args[0])]].val)
	case opDictPopItem:
		r.ok()
		for i := len(d.ents) - 1; i >= 0; i-- {
			if d.ents[i].live {
				r.bool(true)
				r.value([]byte(d.ents[i].key))
				r.value(d.ents[i].val)
				d.remove(x, i)
				return nil
			}
		}
		r.bool(false)
	case opDictClear:
		for i := range d.ents {
			if d.ents[i].live {
				r.drop([]byte(d.ents[i].key))
				r.drop(d.ents[i].val)
			}
		}
		d.idx, d.ents, d.dead = map[string]int{}, nil, 0
		r.ok()
	default:
		x.badOp()
	}
	return nil
}

// ---- List and Array ----

// listObj is a list of encoded values; an Array is a list of fixed length.
type listObj struct {
	mu       sync.Mutex
	items    [][]byte
	fixed    bool
	typecode byte // an Array made by a Python client: its items' typecode (see coerce)
}

func (l *listObj) free() ([][]byte, []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	items := l.items
	l.items = nil
	return items, nil
}

// index resolves a Python index (negative counts from the end).
func index(i int64, n int) (int, bool) {
	if i < 0 {
		i += int64(n)
	}
	if i < 0 || i >= int64(n) {
		return 0, false
	}
	return int(i), true
}

// at reads a call of nargs arguments whose first is an index of the list
// (negative counts from the end); when there is no such item it writes
// the error reply and returns false.
func (l *listObj) at(x *call, nargs int) (int, bool) {
	if !x.need(nargs) {
		return 0, false
	}
	i, ok := x.int(0)
	if !ok {
		return 0, false
	}
	j, ok := index(i, len(l.items))
	if !ok {
		x.r.fail(codeIndex, fmt.Sprintf("manager: %s index out of range", x.obj.kind))
	}
	return j, ok
}

// span reads a call of nargs arguments whose first two are Python slice
// bounds and resolves them against the list, clamping them; when a bound
// is not an integer it writes the error reply and returns false.
func (l *listObj) span(x *call, nargs int) (a, b int, ok bool) {
	if !x.need(nargs) {
		return 0, 0, false
	}
	lo, ok := x.int(0)
	if !ok {
		return 0, 0, false
	}
	hi, ok := x.int(1)
	if !ok {
		return 0, 0, false
	}
	a, b = bounds(lo, hi, len(l.items))
	return a, b, true
}

// bounds resolves Python slice bounds, clamping them.
func bounds(lo, hi int64, n int) (int, int) {
	clamp := func(i int64) int {
		if i < 0 {
			i += int64(n)
		}
		return int(min(max(i, 0), int64(n)))
	}
	a, b := clamp(lo), clamp(hi)
	return a, max(a, b)
}

func (l *listObj) handle(x *call) waitFn {
	r := x.r
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fixed {
		switch x.op {
		case opListGet, opListSet, opListLen, opListSlice, opListSetSlice, opListIndex, opListCount:
		default:
			x.badOp()
			return nil
		}
	}
	switch x.op {
	case opListAppend:
		if !x.need(1) {
			return nil
		}
		x.s.stored(x.args[0])
		l.items = append(l.items, bytes.Clone(x.args[0]))
		r.ok()
	case opListExtend:
		if !x.need(1) {
			return nil
		}
		items, _, err := codec.SplitArray(nil, x.args[0])
		if err != nil {
			r.fail(codeProtocol, "manager: bad items")
			return nil
		}
		for _, it := range items {
			x.s.stored(it)
			l.items = append(l.items, bytes.Clone(it))
		}
		r.ok()
	case opListGet:
		j, ok := l.at(x, 1)
		if !ok {
			return nil
		}
		r.ok()
		r.value(l.items[j])
	case opListSet:
		j, ok := l.at(x, 2)
		if !ok {
			return nil
		}
		x.s.stored(x.args[1])
		old := l.items[j]
		if mayHoldTokens(old) {
			r.drop(old)
			old = nil
		}
		l.items[j] = append(old[:0], x.args[1]...)
		r.ok()
	case opListInsert:
		if !x.need(2) {
			return nil
		}
		i, ok := x.int(0)
		if !ok {
			return nil
		}
		j, _ := bounds(i, i, len(l.items))
		x.s.stored(x.args[1])
		l.items = slices.Insert(l.items, j, bytes.Clone(x.args[1]))
		r.ok()
	case opListPop:
		j, ok := l.at(x, 1)
		if !ok {
			return nil
		}
		r.ok()
		r.value(l.items[j])
		r.drop(l.items[j])
		l.items = slices.Delete(l.items, j, j+1)
	case opListRemove:
		if !x.need(1) {
			return nil
		}
		r.ok()
		for j, it := range l.items {
			if sameStored(it, x.args[0]) {
				r.drop(it)
				l.items = slices.Delete(l.items, j, j+1)
				r.bool(true)
				return nil
			}
		}
		r.bool(false)
	case opListIndex:
		if !x.need(1) {
			return nil
		}
		r.ok()
		r.int(slices.IndexFunc(l.items, func(it []byte) bool { return sameStored(it, x.args[0]) }))
	case opListCount:
		if !x.need(1) {
			return nil
		}
		n := 0
		for _, it := range l.items {
			if sameStored(it, x.args[0]) {
				n++
			}
		}
		r.ok()
		r.int(n)
	case opListLen:
		r.ok()
		r.int(len(l.items))
	case opListSlice:
		a, b, ok := l.span(x, 2)
		if !ok {
			return nil
		}
		r.ok()
		r.array(b - a)
		for _, it := range l.items[a:b] {
			r.elem(it)
		}
	case opListSetSlice:
		a, b, ok := l.span(x, 3)
		if !ok {
			return nil
		}
		items, _, err := codec.SplitArray(nil, x.args[2])
		if err != nil {
			r.fail(codeProtocol, "manager: bad items")
			return nil
		}
		if l.fixed && b-a != len(items) {
			r.fail(codeIndex, fmt.Sprintf("manager: cannot change the length of an array (%d items into a slice of %d)", len(items), b-a))
			return nil
		}
		for _, it := range l.items[a:b] {
			r.drop(it)
		}
		repl := make([][]byte, len(items))
		for i, it := range items {
			x.s.stored(it)
			repl[i] = bytes.Clone(it)
		}
		l.items = slices.Replace(l.items, a, b, repl...)
		r.ok()
	case opListClear:
		for _, it := range l.items {
			r.drop(it)
		}
		l.items = nil
		r.ok()
	case opListReverse:
		slices.Reverse(l.items)
		r.ok()
	default:
		x.badOp()
	}
	return nil
}

// ---- Namespace ----

type nsObj struct {
	mu     sync.Mutex
	fields map[string][]byte
}

func (n *nsObj) free() ([][]byte, []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var vals [][]byte
	for _, v := range n.fields {
		vals = append(vals, v)
	}
	n.fields = map[string][]byte{}
	return vals, nil
}

func (n *nsObj) handle(x *call) waitFn {
	r := x.r
	n.mu.Lock()
	defer n.mu.Unlock()
	name := func() (string, bool) {
		s, err := codec.ReadText(x.args[0])
		if err != nil {
			r.fail(codeProtocol, "manager: a field name is a string")
			return "", false
		}
		return s, true
	}
	switch x.op {
	case opNsGet:
		if !x.need(1) {
			return nil
		}
		f, ok := name()
		if !ok {
			return nil
		}
		v, ok := n.fields[f]
		if !ok {
			r.fail(codeNoField, fmt.Sprintf("manager: namespace has no field %q", f))
			return nil
		}
		r.ok()
		r.value(v)
	case opNsSet:
		if !x.need(2) {
			return nil
		}
		f, ok := name()
		if !ok {
			return nil
		}
		x.s.stored(x.args[1])
		if old, ok := n.fields[f]; ok {
			r.drop(old)
		}
		n.fields[f] = bytes.Clone(x.args[1])
		r.ok()
	case opNsDelete:
		if !x.need(1) {
			return nil
		}
		f, ok := name()
		if !ok {
			return nil
		}
		old, ok := n.fields[f]
		if ok {
			r.drop(old)
			delete(n.fields, f)
		}
		r.ok()
		r.bool(ok)
	case opNsFields:
		names := make([]string, 0, len(n.fields))
		for f := range n.fields {
			names = append(names, f)
		}
		sort.Strings(names)
		r.ok()
		r.array(len(names))
		for _, f := range names {
			r.buf = codec.AppendText(r.buf, f)
		}
	default:
		x.badOp()
	}
	return nil
}

// ---- Value ----

type valueObj struct {
	mu sync.Mutex
	v  []byte
}

func (v *valueObj) free() ([][]byte, []uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.v
	v.v = nil
	return [][]byte{old}, nil
}

func (v *valueObj) handle(x *call) waitFn {
	r := x.r
	v.mu.Lock()
	defer v.mu.Unlock()
	replace := func(nv []byte) {
		x.s.stored(nv)
		if mayHoldTokens(v.v) {
			r.drop(v.v)
			v.v = nil
		}
		v.v = append(v.v[:0], nv...)
	}
	switch x.op {
	case opValueGet:
		r.ok()
		r.value(v.v)
	case opValueSet:
		if !x.need(1) {
			return nil
		}
		replace(x.args[0])
		r.ok()
	case opValueSwap:
		if !x.need(1) {
			return nil
		}
		r.ok()
		r.value(v.v) // copied into the reply before v.v is reused
		replace(x.args[0])
	case opValueCAS:
		if !x.need(2) {
			return nil
		}
		ok := sameStored(v.v, x.args[0])
		if ok {
			replace(x.args[1])
		}
		r.ok()
		r.bool(ok)
	default:
		x.badOp()
	}
	return nil
}

// testHookInstanceServed, if a test sets it, runs once create has served
// an instance of a registered type, before it replies.
var testHookInstanceServed atomic.Pointer[func(s *Server, sess *session, id uint64)]

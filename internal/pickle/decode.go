//go:build linux

package pickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	ogórek "github.com/kisielk/og-rek"
)

// Opcodes of the pickle format (protocols 0 to 5).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opExt1           = 0x82
	opExt2           = 0x83
	opExt4           = 0x84
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98

	highestProtocol = 5
)

// While a pickle is read, its containers are mutable boxes: a list can be
// put in the memo and get its items afterwards (CPython pickles a list
// before its items, so that a list may contain itself). Decode turns the
// boxes into the values of the value model once, at STOP (finish).
type (
	listBox struct {
		boxState
		items []any
	}
	tupleBox struct {
		boxState
		items []any
	}
	dictBox struct {
		boxState
		kv []any // key, value, key, value...
	}
	setBox struct {
		boxState
		items  []any
		frozen bool
	}
	objBox struct {
		boxState
		class    ogórek.Class
		args     *tupleBox
		new      bool
		state    any
		hasState bool
	}
)

// boxState is where finish keeps its progress on a box: being finished
// (seeing it again then is a cycle), or finished into fin.
type boxState struct {
	busy, done bool
	fin        finished
}

func (b *boxState) progress() *boxState { return b }

// box is any of the boxes.
type box interface{ progress() *boxState }

type decoder struct {
	data  []byte
	pos   int
	op    byte // opcode being run
	start int  // its offset
	opts  *Options
	optsv Options // what opts points to

	stack []any
	marks []int          // stack lengths at each MARK
	memo  map[int64]any  // made at the first PUT
	strs  map[string]any // short strs read lately, kept across Decodes (see str)
	proto int
}

// Decode reads one pickle, which must fill data exactly, and returns its
// value (see the package documentation for the value model and the
// checks). Errors are *FormatError, *ForbiddenError or *LimitError.
// The value shares no memory with data.
func Decode(data []byte, opts Options) (any, error) {
	if max := opts.maxSize(); len(data) > max {
		return nil, &LimitError{What: "size", Got: int64(len(data)), Max: int64(max)}
	}
	d := decoders.Get().(*decoder)
	d.data, d.optsv = data, opts
	d.opts = &d.optsv
	v, err := d.run()
	d.reset()
	decoders.Put(d)
	return v, err
}

// decoders keep their stack, marks and memo from one Decode to the next:
// a manager request, a tuple of four with a tuple and a dict in it, cost
// about a dozen allocations for them alone.
var decoders = sync.Pool{New: func() any { return new(decoder) }}

// reset makes d ready for another Decode, holding nothing of the last
// one's values, nor much memory.
func (d *decoder) reset() {
	if cap(d.stack) > 1024 {
		d.stack = nil
	}
	clear(d.stack[:cap(d.stack)])
	if cap(d.marks) > 1024 {
		d.marks = nil
	}
	if len(d.memo) > 1024 {
		d.memo = nil
	}
	clear(d.memo)
	*d = decoder{stack: d.stack[:0], marks: d.marks[:0], memo: d.memo, strs: d.strs}
}

// str returns b as a str, boxed: a short one is kept for the next
// pickles this decoder reads, which often repeat it (a manager's object
// ids and method names), so that it costs them no allocation.
func (d *decoder) str(b []byte) any {
	v := any(string(b))
	if len(b) <= maxCachedStr {
		if len(d.strs) >= maxCachedStrs {
			clear(d.strs)
		}
		if d.strs == nil {
			d.strs = make(map[string]any, maxCachedStrs)
		}
		d.strs[v.(string)] = v
	}
	return v
}

const (
	maxCachedStr  = 64
	maxCachedStrs = 64
)

func (d *decoder) fail(msg string) error {
	return &FormatError{Offset: d.start, Op: d.op, Msg: msg}
}

// take returns the next n bytes of the input. n comes from the input, so
// it is checked against what is left before anything is made of that size.
func (d *decoder) take(n uint64) ([]byte, error) {
	left := uint64(len(d.data) - d.pos)
	if n > left {
		if max := uint64(d.opts.maxSize()); n > max {
			return nil, &LimitError{What: "length", Got: int64(min(n, math.MaxInt64)), Max: int64(max)}
		}
		return nil, d.fail("truncated")
	}
	b := d.data[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

func (d *decoder) byte1() (byte, error) {
	b, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) uint32() (uint32, error) {
	b, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) uint64() (uint64, error) {
	b, err := d.take(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// line returns the text up to the next newline (protocol 0 arguments).
func (d *decoder) line() (string, error) {
	i := bytes.IndexByte(d.data[d.pos:], '\n')
	if i < 0 {
		return "", d.fail("line without newline")
	}
	s := string(d.data[d.pos : d.pos+i])
	d.pos += i + 1
	return s, nil
}

// sized reads a length of width bytes (1, 4 or 8; 4 is signed when
// signed4) and then that many bytes.
func (d *decoder) sized(width int, signed4 bool) ([]byte, error) {
	var n uint64
	switch width {
	case 1:
		b, err := d.byte1()
		if err != nil {
			return nil, err
		}
		n = uint64(b)
	case 4:
		v, err := d.uint32()
		if err != nil {
			return nil, err
		}
		if signed4 && int32(v) < 0 {
			return nil, d.fail("negative length")
		}
		n = uint64(v)
	default:
		v, err := d.uint64()
		if err != nil {
			return nil, err
		}
		n = v
	}
	return d.take(n)
}

func (d *decoder) push(v any) { d.stack = append(d.stack, v) }

func (d *decoder) base() int {
	if len(d.marks) == 0 {
		return 0
	}
	return d.marks[len(d.marks)-1]
}

func (d *decoder) pop() (any, error) {
	if len(d.stack) <= d.base() {
		return nil, d.fail("stack underflow")
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return v, nil
}

func (d *decoder) top() (any, error) {
	if len(d.stack) <= d.base() {
		return nil, d.fail("stack underflow")
	}
	return d.stack[len(d.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and removes them
// and the mark. The slice is a copy: the stack reuses its memory.
func (d *decoder) popMark() ([]any, error) {
	if len(d.marks) == 0 {
		return nil, d.fail("no MARK")
	}
	k := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := append([]any(nil), d.stack[k:]...)
	clear(d.stack[k:])
	d.stack = d.stack[:k]
	return items, nil
}

func (d *decoder) memoPut(key int64) error {
	v, err := d.top()
	if err != nil {
		return err
	}
	if key < 0 {
		return d.fail("negative memo key")
	}
	if d.memo == nil {
		d.memo = map[int64]any{}
	}
	if _, ok := d.memo[key]; !ok {
		if max := d.opts.maxMemo(); len(d.memo) >= max {
			return &LimitError{What: "memo", Got: int64(len(d.memo)) + 1, Max: int64(max)}
		}
	}
	d.memo[key] = v
	return nil
}

func (d *decoder) memoGet(key int64) error {
	v, ok := d.memo[key]
	if !ok {
		return d.fail("memo key " + strconv.FormatInt(key, 10) + " not set")
	}
	d.push(v)
	return nil
}

// class checks that a pickle may name module.name and pushes it.
func (d *decoder) class(module, name string) error {
	c := ogórek.Class{Module: module, Name: name}
	if !d.allowed(c) {
		return &ForbiddenError{Module: module, Name: name}
	}
	d.push(c)
	return nil
}

func (d *decoder) allowed(c ogórek.Class) bool {
	if builtinCalls[c] {
		return true
	}
	for _, a := range d.opts.Allow {
		if a == c {
			return true
		}
	}
	return false
}

func (d *decoder) run() (any, error) {
	for {
		d.start = d.pos
		op, err := d.byte1()
		if err != nil {
			return nil, d.fail("no STOP")
		}
		d.op = op
		if op == opStop {
			v, err := d.pop()
			if err != nil {
				return nil, err
			}
			if d.pos != len(d.data) {
				return nil, d.fail("data after STOP")
			}
			f, err := d.finish(v, 0)
			return f.v, err
		}
		if err := d.step(op); err != nil {
			return nil, err
		}
	}
}

// memoKey reads the memo key of a GET or PUT opcode: a decimal line for
// the text forms, one byte or four for the binary ones.
func (d *decoder) memoKey(op byte) (int64, error) {
	switch op {
	case opGet, opPut:
		s, err := d.line()
		if err != nil {
			return 0, err
		}
		k, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, d.fail("bad memo key")
		}
		return k, nil
	case opBinGet, opBinPut:
		k, err := d.byte1()
		return int64(k), err
	}
	k, err := d.uint32()
	return int64(k), err
}

// step runs one opcode.
func (d *decoder) step(op byte) error {
	switch op {
	case opProto:
		v, err := d.byte1()
		if err != nil {
			return err
		}
		if v > highestProtocol {
			return d.fail("unsupported protocol " + strconv.Itoa(int(v)))
		}
		d.proto = int(v)
	case opFrame:
		// A frame only announces how much follows; it must fit.
		n, err := d.uint64()
		if err != nil {
			return err
		}
		if n > uint64(len(d.data)-d.pos) {
			if max := uint64(d.opts.maxSize()); n > max {
				return &LimitError{What: "length", Got: int64(min(n, math.MaxInt64)), Max: int64(max)}
			}
			return d.fail("frame beyond the input")
		}
	case opMark:
		d.marks = append(d.marks, len(d.stack))
	case opPop:
		if len(d.stack) > d.base() {
			_, err := d.pop()
			return err
		}
		_, err := d.popMark()
		return err
	case opPopMark:
		_, err := d.popMark()
		return err
	case opDup:
		v, err := d.top()
		if err != nil {
			return err
		}
		d.push(v)

	case opNone:
		d.push(nil)
	case opNewTrue:
		d.push(true)
	case opNewFalse:
		d.push(false)
	case opBinInt:
		v, err := d.uint32()
		if err != nil {
			return err
		}
		d.push(int64(int32(v)))
	case opBinInt1:
		v, err := d.byte1()
		if err != nil {
			return err
		}
		d.push(int64(v))
	case opBinInt2:
		b, err := d.take(2)
		if err != nil {
			return err
		}
		d.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1, opLong4:
		width := 1
		if op == opLong4 {
			width = 4
		}
		b, err := d.sized(width, true)
		if err != nil {
			return err
		}
		d.push(twosComplement(b))
	case opInt, opLong:
		s, err := d.line()
		if err != nil {
			return err
		}
		return d.textInt(s)
	case opBinFloat:
		b, err := d.take(8)
		if err != nil {
			return err
		}
		d.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opFloat:
		s, err := d.line()
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return d.fail("bad float")
		}
		d.push(f)

	case opShortBinUni, opBinUnicode, opBinUnicode8:
		b, err := d.sized(lengthWidth(op), false)
		if err != nil {
			return err
		}
		// Only a short str can be cached: a long one is not hashed
		// for a look-up that cannot find it.
		if len(b) <= maxCachedStr {
			if v, ok := d.strs[string(b)]; ok {
				d.push(v) // checked when it was cached
				break
			}
		}
		if !pyUTF8(string(b)) {
			return d.fail("str is not UTF-8")
		}
		d.push(d.str(b))
	case opShortBinString, opBinString:
		// A Python 2 str: Python 3 reads it as ASCII (its default).
		b, err := d.sized(lengthWidth(op), op == opBinString)
		if err != nil {
			return err
		}
		if !ascii(string(b)) {
			return d.fail("Python 2 str is not ASCII")
		}
		d.push(string(b))
	case opUnicode:
		s, err := d.line()
		if err != nil {
			return err
		}
		u, ok := rawUnicodeEscape(s)
		if !ok {
			return d.fail("bad raw-unicode-escape text")
		}
		d.push(u)
	case opString:
		s, err := d.line()
		if err != nil {
			return err
		}
		u, ok := quotedString(s)
		if !ok || !ascii(u) {
			return d.fail("bad quoted string")
		}
		d.push(u)
	case opShortBinBytes, opBinBytes, opBinBytes8:
		b, err := d.sized(lengthWidth(op), false)
		if err != nil {
			return err
		}
		d.push(ogórek.Bytes(b))
	case opByteArray8:
		b, err := d.sized(8, false)
		if err != nil {
			return err
		}
		d.push(append([]byte{}, b...))

	case opEmptyList:
		d.push(&listBox{})
	case opList:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		d.push(&listBox{items: items})
	case opAppend:
		v, err := d.pop()
		if err != nil {
			return err
		}
		return d.extendList([]any{v})
	case opAppends:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		return d.extendList(items)
	case opEmptyTuple:
		d.push(&tupleBox{})
	case opTuple:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		d.push(&tupleBox{items: items})
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(d.stack)-d.base() < n {
			return d.fail("stack underflow")
		}
		k := len(d.stack) - n
		t := &tupleBox{items: append([]any(nil), d.stack[k:]...)}
		d.stack = append(d.stack[:k], t)
	case opEmptyDict:
		d.push(&dictBox{})
	case opDict:
		kv, err := d.popMark()
		if err != nil {
			return err
		}
		if len(kv)%2 != 0 {
			return d.fail("odd number of dict items")
		}
		d.push(&dictBox{kv: kv})
	case opSetItem:
		v, err := d.pop()
		if err != nil {
			return err
		}
		k, err := d.pop()
		if err != nil {
			return err
		}
		return d.extendDict([]any{k, v})
	case opSetItems:
		kv, err := d.popMark()
		if err != nil {
			return err
		}
		if len(kv)%2 != 0 {
			return d.fail("odd number of dict items")
		}
		return d.extendDict(kv)
	case opEmptySet:
		d.push(&setBox{})
	case opAddItems:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		t, err := d.top()
		if err != nil {
			return err
		}
		s, ok := t.(*setBox)
		if !ok || s.frozen {
			return d.fail("ADDITEMS on something else than a set")
		}
		s.items = append(s.items, items...)
	case opFrozenSet:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		d.push(&setBox{items: items, frozen: true})

	case opGet, opBinGet, opLongBinGet:
		k, err := d.memoKey(op)
		if err != nil {
			return err
		}
		return d.memoGet(k)
	case opPut, opBinPut, opLongBinPut:
		k, err := d.memoKey(op)
		if err != nil {
			return err
		}
		return d.memoPut(k)
	case opMemoize:
		return d.memoPut(int64(len(d.memo)))

	case opGlobal:
		module, err := d.line()
		if err != nil {
			return err
		}
		name, err := d.line()
		if err != nil {
			return err
		}
		return d.class(module, name)
	case opStackGlobal:
		n, err := d.pop()
		if err != nil {
			return err
		}
		m, err := d.pop()
		if err != nil {
			return err
		}
		module, ok1 := m.(string)
		name, ok2 := n.(string)
		if !ok1 || !ok2 {
			return d.fail("STACK_GLOBAL of something else than strings")
		}
		return d.class(module, name)
	case opReduce:
		a, err := d.pop()
		if err != nil {
			return err
		}
		c, err := d.pop()
		if err != nil {
			return err
		}
		return d.call(c, a, false)
	case opNewObj:
		a, err := d.pop()
		if err != nil {
			return err
		}
		c, err := d.pop()
		if err != nil {
			return err
		}
		return d.call(c, a, true)
	case opNewObjEx:
		kw, err := d.pop()
		if err != nil {
			return err
		}
		if k, ok := kw.(*dictBox); !ok || len(k.kv) != 0 {
			return d.fail("NEWOBJ_EX with keyword arguments")
		}
		a, err := d.pop()
		if err != nil {
			return err
		}
		c, err := d.pop()
		if err != nil {
			return err
		}
		return d.call(c, a, true)
	case opObj:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.fail("OBJ without a class")
		}
		return d.call(items[0], &tupleBox{items: items[1:]}, false)
	case opInst:
		module, err := d.line()
		if err != nil {
			return err
		}
		name, err := d.line()
		if err != nil {
			return err
		}
		items, err := d.popMark()
		if err != nil {
			return err
		}
		if err := d.class(module, name); err != nil {
			return err
		}
		c, _ := d.pop()
		return d.call(c, &tupleBox{items: items}, false)
	case opBuild:
		state, err := d.pop()
		if err != nil {
			return err
		}
		t, err := d.top()
		if err != nil {
			return err
		}
		o, ok := t.(*objBox)
		if !ok || o.hasState {
			return d.fail("BUILD on something else than a new object")
		}
		o.state, o.hasState = state, true

	case opPersID, opBinPersID:
		return &ForbiddenError{Name: "persistent id"}
	case opExt1, opExt2, opExt4:
		return &ForbiddenError{Name: "extension registry"}
	case opNextBuffer, opReadOnlyBuffer:
		return &ForbiddenError{Name: "out-of-band buffer"}
	default:
		return d.fail("unknown opcode")
	}
	return nil
}

func lengthWidth(op byte) int {
	switch op {
	case opShortBinUni, opShortBinString, opShortBinBytes:
		return 1
	case opBinUnicode8, opBinBytes8, opByteArray8:
		return 8
	}
	return 4
}

func (d *decoder) extendList(items []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	l, ok := t.(*listBox)
	if !ok {
		return d.fail("APPEND on something else than a list")
	}
	l.items = append(l.items, items...)
	return nil
}

func (d *decoder) extendDict(kv []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	m, ok := t.(*dictBox)
	if !ok {
		return d.fail("SETITEM on something else than a dict")
	}
	m.kv = append(m.kv, kv...)
	return nil
}

// call handles REDUCE, NEWOBJ, OBJ and INST: the builtins the codec knows
// become Go values; an allowed class (the only kind of callable GLOBAL
// lets through) becomes an objBox.
func (d *decoder) call(c, a any, isNew bool) error {
	class, ok := c.(ogórek.Class)
	if !ok {
		return d.fail("call of something else than a global")
	}
	args, ok := a.(*tupleBox)
	if !ok {
		return d.fail("call arguments are not a tuple")
	}
	if builtinCalls[class] && !isNew {
		v, err := d.builtin(class, args.items)
		if err != nil {
			return err
		}
		d.push(v)
		return nil
	}
	d.push(&objBox{class: class, args: args, new: isNew})
	return nil
}

// builtin makes the value of set(...), frozenset(...), bytearray(...) or
// _codecs.encode(...) in the forms CPython writes them.
func (d *decoder) builtin(class ogórek.Class, args []any) (any, error) {
	switch class.Name {
	case "set", "frozenset":
		s := &setBox{frozen: class.Name == "frozenset"}
		if len(args) == 0 {
			return s, nil
		}
		if len(args) == 1 {
			switch it := args[0].(type) {
			case *listBox:
				s.items = append(s.items, it.items...)
				return s, nil
			case *tupleBox:
				s.items = append(s.items, it.items...)
				return s, nil
			}
		}
	case "bytearray":
		switch len(args) {
		case 0:
			return []byte{}, nil
		case 1:
			if b, ok := args[0].(ogórek.Bytes); ok {
				return []byte(b), nil
			}
		case 2:
			if enc, _ := args[1].(string); enc == "latin-1" || enc == "latin1" {
				if b, ok := latin1(args[0]); ok {
					return b, nil
				}
			}
		}
	case "bytes":
		// protocols 0-2 write b'' as a call of bytes without arguments
		if len(args) == 0 {
			return ogórek.Bytes(""), nil
		}
	case "encode":
		if len(args) == 2 {
			if enc, _ := args[1].(string); enc == "latin1" || enc == "latin-1" {
				if b, ok := latin1(args[0]); ok {
					return ogórek.Bytes(b), nil
				}
			}
		}
	}
	return nil, d.fail("unexpected arguments for " + class.Module + "." + class.Name)
}

// latin1 returns the bytes a str of code points below 256 stands for
// (how protocols 0-2 carry bytes).
func latin1(v any) ([]byte, bool) {
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		b = append(b, byte(r))
	}
	return b, true
}

// textInt parses the argument of INT or LONG (protocol 0).
func (d *decoder) textInt(s string) error {
	switch s {
	case "00":
		d.push(false)
		return nil
	case "01":
		d.push(true)
		return nil
	}
	s = strings.TrimSuffix(s, "L")
	if len(s) > maxTextDigits+1 {
		return &LimitError{What: "digits", Got: int64(len(s)), Max: maxTextDigits}
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		d.push(v)
		return nil
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return d.fail("bad integer")
	}
	d.push(b)
	return nil
}

// twosComplement reads a little-endian two's complement integer (LONG1,
// LONG4) in time linear in its length.
func twosComplement(b []byte) any {
	if len(b) <= 8 {
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		if len(b) > 0 && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
			u |= math.MaxUint64 << (8 * len(b)) // sign-extend
		}
		return int64(u)
	}
	be := make([]byte, len(b))
	for i, c := range b {
		be[len(b)-1-i] = c
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

// rawUnicodeEscape decodes the argument of UNICODE: latin-1 text where
// \uXXXX and \UXXXXXXXX stand for other code points.
func rawUnicodeEscape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(s) {
				return "", false
			}
			r, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
			if err != nil || r > utf8.MaxRune {
				return "", false
			}
			if r >= 0xd800 && r < 0xe000 {
				// a lone surrogate, kept as CPython's surrogatepass writes it
				b.Write([]byte{0xed, byte(0x80 | (r>>6)&0x3f), byte(0x80 | r&0x3f)})
			} else {
				b.WriteRune(rune(r))
			}
			i += 1 + n
			continue
		}
		b.WriteRune(rune(c))
	}
	return b.String(), true
}

// quotedString decodes the argument of STRING: a quoted Python 2 str
// literal.
func quotedString(s string) (string, bool) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", false
	}
	s = s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i >= len(s) {
			return "", false
		}
		switch c := s[i]; c {
		case '\\', '\'', '"':
			b.WriteByte(c)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'x':
			if i+3 > len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

// finished is a box turned into its value; n counts the values in it as
// a consumer walking it meets them (a value shared in the pickle counts
// once per place it appears).
type finished struct {
	v any
	n int64
}

// finish turns boxes into the value model, each box once (a value shared
// in the pickle is shared in the result), refusing cycles, nesting deeper
// than MaxDepth, and more than MaxValues values met by a walk: a few
// bytes of pickle can share a tuple in a tuple sixty times over, which is
// small in memory but endless for whoever walks it.
func (d *decoder) finish(v any, depth int) (finished, error) {
	bx, ok := v.(box)
	if !ok {
		return finished{v, 1}, nil
	}
	st := bx.progress()
	if st.done {
		return st.fin, nil
	}
	if max := d.opts.maxDepth(); depth >= max {
		return finished{}, &LimitError{What: "depth", Got: int64(depth) + 1, Max: int64(max)}
	}
	if st.busy {
		return finished{}, &FormatError{Offset: len(d.data) - 1, Op: opStop, Msg: "a value contains itself"}
	}
	st.busy = true
	defer func() { st.busy = false }()
	var f finished
	var err error
	var items []any
	switch b := v.(type) {
	case *listBox:
		if items, f.n, err = d.finishAll(b.items, depth); err == nil {
			f.v = items
		}
	case *tupleBox:
		if items, f.n, err = d.finishAll(b.items, depth); err == nil {
			f.v = ogórek.Tuple(items)
		}
	case *setBox:
		if items, f.n, err = d.finishAll(b.items, depth); err == nil {
			err = hashable(items)
		}
		if err == nil && b.frozen {
			f.v = FrozenSet(items)
		} else if err == nil {
			f.v = Set(items)
		}
	case *dictBox:
		f, err = d.finishDict(b, depth)
	case *objBox:
		f, err = d.finishObj(b, depth)
	}
	if err != nil {
		return finished{}, err
	}
	if max := int64(d.opts.maxValues()); f.n > max {
		return finished{}, &LimitError{What: "values", Got: f.n, Max: max}
	}
	st.done, st.fin = true, f
	return f, nil
}

// finishAll finishes the items of a box, and counts the values met (the
// box's own among them). The items come back as a slice, not boxed in an
// any: each caller makes of them the value it is.
func (d *decoder) finishAll(items []any, depth int) ([]any, int64, error) {
	out := make([]any, len(items))
	n := int64(1)
	for i, it := range items {
		f, err := d.finish(it, depth+1)
		if err != nil {
			return nil, 0, err
		}
		out[i] = f.v
		// Checked as it grows: hashing a dict's keys walks them.
		if n += f.n; n > int64(d.opts.maxValues()) {
			return nil, 0, &LimitError{What: "values", Got: n, Max: int64(d.opts.maxValues())}
		}
	}
	return out, n, nil
}

func (d *decoder) finishDict(b *dictBox, depth int) (finished, error) {
	kv, n, err := d.finishAll(b.kv, depth)
	if err != nil {
		return finished{}, err
	}
	m := newDict(len(kv) / 2)
	for i := 0; i < len(kv); i += 2 {
		k := dictKey(kv[i])
		if err := hashable([]any{k}); err != nil {
			return finished{}, err
		}
		if err := setItem(m, k, kv[i+1]); err != nil {
			return finished{}, err
		}
	}
	return finished{m, n}, nil
}

// dictKey returns k with None, also inside tuples and the arguments of
// calls, as ogórek.None{}: ogórek.Dict, which indexes a Dict, cannot hash
// nil.
func dictKey(k any) any {
	k, _ = noneKey(k)
	return k
}

// noneKey is dictKey, also saying whether k changed (a tuple is copied
// only then).
func noneKey(k any) (any, bool) {
	switch x := k.(type) {
	case nil:
		return ogórek.None{}, true
	case ogórek.Tuple:
		var out ogórek.Tuple
		for i, it := range x {
			c, changed := noneKey(it)
			if changed && out == nil {
				out = append(make(ogórek.Tuple, 0, len(x)), x[:i]...)
			}
			if out != nil {
				out = append(out, c)
			}
		}
		if out != nil {
			return out, true
		}
	case ogórek.Call:
		if args, changed := noneKey(x.Args); changed {
			return ogórek.Call{Callable: x.Callable, Args: args.(ogórek.Tuple)}, true
		}
	}
	return k, false
}

// setItem is m.Set, which panics on a key it cannot hash: hashable
// should have refused such a key, and if it missed one, the pickle is
// refused rather than the program stopped. A key the pickle repeats
// keeps its first place and takes the last value, as in CPython.
func setItem(m *Dict, k, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &FormatError{Op: opStop, Msg: fmt.Sprintf("dict key: %v", r)}
		}
	}()
	m.Set(k, v)
	return nil
}

func (d *decoder) finishObj(b *objBox, depth int) (finished, error) {
	items, n, err := d.finishAll(b.args.items, depth)
	if err != nil {
		return finished{}, err
	}
	args := ogórek.Tuple(items)
	f := finished{n: n}
	if !b.new && !b.hasState {
		f.v = ogórek.Call{Callable: b.class, Args: args}
		return f, nil
	}
	o := &Object{Class: b.class, Args: args, New: b.new}
	if b.hasState {
		s, err := d.finish(b.state, depth+1)
		if err != nil {
			return finished{}, err
		}
		o.State = s.v
		f.n += s.n
	}
	return finished{o, f.n}, nil
}

// hashable refuses what Python could not have as a set element or dict
// key (and ogórek.Dict, which indexes a Dict, would panic on).
func hashable(items []any) error {
	for _, it := range items {
		switch k := it.(type) {
		case nil, ogórek.None, bool, int64, *big.Int, float64, string, ogórek.Bytes, ogórek.Class:
		case ogórek.Tuple:
			if err := hashable(k); err != nil {
				return err
			}
		case ogórek.Call:
			if err := hashable(k.Args); err != nil {
				return err
			}
		default:
			return &FormatError{Op: opStop, Msg: "unhashable key or set element of type " + typeName(it)}
		}
	}
	return nil
}

func typeName(v any) string {
	if v == nil {
		return "None"
	}
	return fmt.Sprintf("%T", v)
}

// pyUTF8 reports whether s is what CPython writes for a str: UTF-8, where
// lone surrogates (a str made with surrogateescape, as os.fsdecode does)
// are encoded as if they were characters ("surrogatepass").
func pyUTF8(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			if i+2 < len(s) && s[i] == 0xed && s[i+1]&0xe0 == 0xa0 && s[i+2]&0xc0 == 0x80 {
				i += 3
				continue
			}
			return false
		}
		i += n
	}
	return true
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

//go:build linux

package pickle

import (
	"encoding/binary"
	"math"
	"math/big"
	"reflect"

	ogórek "github.com/kisielk/og-rek"
)

type encoder struct {
	buf  []byte
	opts *Options
}

// Encode writes v as a protocol 5 pickle (see the package documentation
// for the Go types it takes). Errors are *EncodeError, or *LimitError
// when v nests deeper than MaxDepth (a value that contains itself through
// pointers does).
func Encode(v any, opts Options) ([]byte, error) {
	e := &encoder{buf: make([]byte, 0, 64), opts: &opts}
	e.buf = append(e.buf, opProto, highestProtocol)
	if err := e.value(reflect.ValueOf(v), 0); err != nil {
		return nil, err
	}
	return append(e.buf, opStop), nil
}

func (e *encoder) value(rv reflect.Value, depth int) error {
	if max := e.opts.maxDepth(); depth > max {
		return &LimitError{What: "depth", Got: int64(depth), Max: int64(max)}
	}
	if !rv.IsValid() {
		e.buf = append(e.buf, opNone)
		return nil
	}
	// The types of the value model first: their kinds would say otherwise.
	switch v := rv.Interface().(type) {
	case ogórek.None:
		e.buf = append(e.buf, opNone)
		return nil
	case ogórek.Bytes:
		e.sized(string(v), opShortBinBytes, opBinBytes, opBinBytes8)
		return nil
	case ogórek.Tuple:
		return e.tuple(v, depth)
	case ogórek.Dict:
		return e.dict(v.Len(), v.Iter(), depth)
	case *Dict:
		if v == nil {
			break
		}
		return e.dict(v.Len(), v.All(), depth)
	case Dict:
		return e.dict(v.Len(), v.All(), depth)
	case Set:
		e.buf = append(e.buf, opEmptySet, opMark)
		if err := e.items(v, depth); err != nil {
			return err
		}
		e.buf = append(e.buf, opAddItems)
		return nil
	case FrozenSet:
		e.buf = append(e.buf, opMark)
		if err := e.items(v, depth); err != nil {
			return err
		}
		e.buf = append(e.buf, opFrozenSet)
		return nil
	case ogórek.Class:
		e.class(v)
		return nil
	case ogórek.Call:
		return e.object(&Object{Class: v.Callable, Args: v.Args}, depth)
	case Object:
		return e.object(&v, depth)
	case *Object:
		if v == nil {
			break
		}
		return e.object(v, depth)
	case *big.Int:
		if v == nil {
			break
		}
		e.bigInt(v)
		return nil
	case big.Int:
		e.bigInt(&v)
		return nil
	}

	switch rv.Kind() {
	case reflect.Bool:
		if rv.Bool() {
			e.buf = append(e.buf, opNewTrue)
		} else {
			e.buf = append(e.buf, opNewFalse)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.int(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u <= math.MaxInt64 {
			e.int(int64(u))
		} else {
			e.bigInt(new(big.Int).SetUint64(u))
		}
	case reflect.Float32, reflect.Float64:
		e.buf = append(e.buf, opBinFloat)
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(rv.Float()))
	case reflect.String:
		s := rv.String()
		if !pyUTF8(s) {
			// Python decodes str as UTF-8 and would fail on the whole message.
			return &EncodeError{Type: rv.Type().String(), Msg: "string is not UTF-8 (send it as ogórek.Bytes)"}
		}
		e.sized(s, opShortBinUni, opBinUnicode, opBinUnicode8)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.buf = append(e.buf, opNone)
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			e.byteArray(rv)
			return nil
		}
		e.buf = append(e.buf, opEmptyList)
		if rv.Len() == 0 {
			return nil
		}
		e.buf = append(e.buf, opMark)
		for i := range rv.Len() {
			if err := e.value(rv.Index(i), depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, opAppends)
	case reflect.Map:
		if rv.IsNil() {
			e.buf = append(e.buf, opNone)
			return nil
		}
		e.buf = append(e.buf, opEmptyDict)
		if rv.Len() == 0 {
			return nil
		}
		e.buf = append(e.buf, opMark)
		for it := rv.MapRange(); it.Next(); {
			if err := e.value(it.Key(), depth+1); err != nil {
				return err
			}
			if err := e.value(it.Value(), depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, opSetItems)
	case reflect.Struct:
		return e.structDict(rv, depth)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.buf = append(e.buf, opNone)
			return nil
		}
		if rv.Kind() == reflect.Interface {
			return e.value(rv.Elem(), depth) // an item of a []any: not a level
		}
		return e.value(rv.Elem(), depth+1) // a level, so that a cycle of pointers ends
	default:
		return &EncodeError{Type: rv.Type().String(), Msg: "no Python equivalent"}
	}
	return nil
}

func (e *encoder) int(v int64) { e.buf = appendInt(e.buf, v) }

// appendInt appends the shortest of BININT1, BININT2, BININT and LONG1
// that holds v.
func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= math.MaxUint8:
		return append(b, opBinInt1, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return append(b, opBinInt2, byte(v), byte(v>>8))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		b = append(b, opBinInt)
		return binary.LittleEndian.AppendUint32(b, uint32(v))
	default:
		b = append(b, opLong1, 8)
		return binary.LittleEndian.AppendUint64(b, uint64(v))
	}
}

// bigInt writes LONG1 or LONG4: little-endian two's complement, shortest
// form (a text integer would be refused by CPython beyond 4300 digits).
func (e *encoder) bigInt(v *big.Int) {
	if v.IsInt64() {
		e.int(v.Int64())
		return
	}
	n := v.BitLen()/8 + 1 // room for the sign bit
	mag := v
	if v.Sign() < 0 {
		// two's complement of -x in n bytes is 2^(8n) - x
		mag = new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), uint(8*n)), v)
	}
	be := mag.FillBytes(make([]byte, n))
	if n < 256 {
		e.buf = append(e.buf, opLong1, byte(n))
	} else {
		e.buf = append(e.buf, opLong4)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(n))
	}
	for i := n - 1; i >= 0; i-- {
		e.buf = append(e.buf, be[i])
	}
}

// sized writes a string or bytes opcode with the shortest length field.
func (e *encoder) sized(s string, op1, op4, op8 byte) { e.buf = appendSized(e.buf, s, op1, op4, op8) }

// appendSized appends s with the opcode of the shortest length field.
func appendSized(b []byte, s string, op1, op4, op8 byte) []byte {
	switch n := len(s); {
	case n < 256:
		b = append(b, op1, byte(n))
	case n <= math.MaxUint32:
		b = append(b, op4)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
	default:
		b = append(b, op8)
		b = binary.LittleEndian.AppendUint64(b, uint64(n))
	}
	return append(b, s...)
}

func (e *encoder) byteArray(rv reflect.Value) {
	e.buf = append(e.buf, opByteArray8)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(rv.Len()))
	if rv.Kind() == reflect.Slice {
		e.buf = append(e.buf, rv.Bytes()...)
		return
	}
	for i := range rv.Len() {
		e.buf = append(e.buf, byte(rv.Index(i).Uint()))
	}
}

func (e *encoder) items(items []any, depth int) error {
	for _, it := range items {
		if err := e.value(reflect.ValueOf(it), depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) tuple(t ogórek.Tuple, depth int) error {
	if len(t) == 0 {
		e.buf = append(e.buf, opEmptyTuple)
		return nil
	}
	if len(t) > 3 {
		e.buf = append(e.buf, opMark)
	}
	if err := e.items(t, depth); err != nil {
		return err
	}
	if len(t) > 3 {
		e.buf = append(e.buf, opTuple)
	} else {
		e.buf = append(e.buf, opTuple1+byte(len(t))-1)
	}
	return nil
}

// dict writes the n pairs that all yields, in that order (a Dict's is
// Python's; an ogórek.Dict's is arbitrary).
func (e *encoder) dict(n int, all func(yield func(k, v any) bool), depth int) error {
	e.buf = append(e.buf, opEmptyDict)
	if n == 0 {
		return nil
	}
	e.buf = append(e.buf, opMark)
	var err error
	all(func(k, v any) bool {
		if err = e.value(reflect.ValueOf(k), depth+1); err == nil {
			err = e.value(reflect.ValueOf(v), depth+1)
		}
		return err == nil
	})
	e.buf = append(e.buf, opSetItems)
	return err
}

func (e *encoder) class(c ogórek.Class) {
	e.sized(c.Module, opShortBinUni, opBinUnicode, opBinUnicode8)
	e.sized(c.Name, opShortBinUni, opBinUnicode, opBinUnicode8)
	e.buf = append(e.buf, opStackGlobal)
}

func (e *encoder) object(o *Object, depth int) error {
	e.class(o.Class)
	if err := e.tuple(o.Args, depth); err != nil {
		return err
	}
	if o.New {
		e.buf = append(e.buf, opNewObj)
	} else {
		e.buf = append(e.buf, opReduce)
	}
	if o.State == nil {
		return nil
	}
	if err := e.value(reflect.ValueOf(o.State), depth+1); err != nil {
		return err
	}
	e.buf = append(e.buf, opBuild)
	return nil
}

// structDict writes a struct as a dict of its exported fields, keyed by
// the field's name or its `pickle:"name"` tag; "-" leaves a field out.
func (e *encoder) structDict(rv reflect.Value, depth int) error {
	e.buf = append(e.buf, opEmptyDict)
	fields := StructFields(rv.Type())
	if len(fields) == 0 {
		return nil
	}
	e.buf = append(e.buf, opMark)
	for _, f := range fields {
		e.sized(f.Key, opShortBinUni, opBinUnicode, opBinUnicode8)
		if err := e.value(rv.Field(f.Index), depth+1); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, opSetItems)
	return nil
}

// A Field is an exported struct field as a dict entry.
type Field struct {
	Key   string // dict key: the `pickle:"..."` tag or the field's name
	Index int    // index in the struct
}

// StructFields lists the fields of struct type t that a dict carries, in
// their order in t (one home for the tag rule, shared by encoding and by
// decoding into a struct).
func StructFields(t reflect.Type) []Field {
	var out []Field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key := f.Name
		if tag, ok := f.Tag.Lookup("pickle"); ok {
			if tag == "-" {
				continue
			}
			if tag != "" {
				key = tag
			}
		}
		out = append(out, Field{Key: key, Index: i})
	}
	return out
}

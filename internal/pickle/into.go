//go:build linux

package pickle

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"unsafe"

	ogórek "github.com/kisielk/og-rek"
)

// MismatchError reports a decoded value that does not fit the Go
// destination Into was given: Python is the value's Python type, Go the
// destination's Go type, Path where in the destination (".name", "[2]",
// empty for the whole).
type MismatchError struct {
	Python string
	Go     string
	Path   string
	Msg    string // why, when more than the types
}

func (e *MismatchError) Error() string {
	s := fmt.Sprintf("pickle: cannot store Python %s in Go %s", e.Python, e.Go)
	if e.Path != "" {
		s += " at " + e.Path
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Into stores v, a value of the model Decode returns, in the variable dst
// points to, converting as encoding/json would:
//
//   - any (an empty interface) takes v as it is; a non-empty interface
//     takes it when v's type implements it.
//   - bool takes bool; intN and uintN take int when it fits; floatN takes
//     float and int; *big.Int and big.Int take int.
//   - string takes str; []byte takes bytes and bytearray, [N]byte those of
//     length N.
//   - []T takes list, tuple, set and frozenset; [N]T a list or tuple of
//     length N.
//   - map[K]V takes dict, each key and value converted; map[K]struct{}
//     and map[K]bool also take set and frozenset.
//   - a struct takes a dict whose keys are strs: each key that names a
//     field (StructFields: its name or `pickle:"name"` tag) sets it;
//     other keys are ignored and fields without a key keep their value.
//   - None stores nil in a pointer, slice, map or interface; a pointer
//     otherwise points to a new variable that takes v.
//   - the types of the value model take themselves (a Dict also takes a
//     *Dict, as a copy of it).
//
// Anything else is a *MismatchError. dst must be a non-nil pointer.
//
// A list, tuple, set or dict that v holds more than once (the pickle
// shares it, as Python's [[0] * 3] * 2 does) fills one slice or map,
// which each place it appears in shares, as in Python: what Into makes
// stays proportional to the pickle.
func Into(v any, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &MismatchError{Python: TypeName(v), Go: fmt.Sprintf("%T", dst), Msg: "the destination must be a non-nil pointer"}
	}
	var st intoState
	return st.into(v, rv.Elem(), "")
}

// intoState is the state of one Into: the slices and maps it made of the
// containers of v. Decode shares a container that the pickle references
// more than once (as Python does: [[0] * 1000] * 1000 holds one inner
// list), and Into shares what it makes of it too, so that what it makes
// stays proportional to the message: a copy per reference would make
// millions of values of a few KiB of pickle.
type intoState struct {
	made map[shared]reflect.Value
}

// A shared is a container of v (the data of a list, tuple or set, or a
// dict) and the type Into made of it.
type shared struct {
	src any
	n   int
	t   reflect.Type
}

// sharedOf returns the key of v as a container converted to t, false for
// a value Into does not share: scalars, and empty lists, tuples and sets,
// whose data has no address to tell one from another (an empty dict is
// shared: it is a map, which can be written to).
func sharedOf(v any, t reflect.Type) (shared, bool) {
	switch d := v.(type) {
	case ogórek.Dict:
		return shared{d, -1, t}, true
	case *Dict:
		return shared{d, -1, t}, true
	}
	if items, ok := sequence(v); ok && len(items) > 0 {
		return shared{unsafe.SliceData(items), len(items), t}, true
	}
	return shared{}, false
}

// intoShared converts v into dst, a slice or map, with fill, unless Into
// made one of the same container for the same type before: then dst
// takes that one.
func (st *intoState) intoShared(v any, dst reflect.Value, fill func() error) error {
	key, ok := sharedOf(v, dst.Type())
	if ok {
		if made, ok := st.made[key]; ok {
			dst.Set(made)
			return nil
		}
	}
	if err := fill(); err != nil {
		return err
	}
	if ok {
		if st.made == nil {
			st.made = map[shared]reflect.Value{}
		}
		st.made[key] = dst
	}
	return nil
}

var (
	bigIntType = reflect.TypeFor[big.Int]()
	dictType   = reflect.TypeFor[Dict]()
)

func (st *intoState) into(v any, dst reflect.Value, path string) error {
	if _, ok := v.(ogórek.None); ok {
		v = nil // None in a dict key
	}
	t := dst.Type()
	mismatch := func(msg string) error {
		return &MismatchError{Python: TypeName(v), Go: t.String(), Path: path, Msg: msg}
	}
	if v == nil {
		switch dst.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			dst.SetZero()
			return nil
		}
		return mismatch("")
	}
	if dst.Kind() == reflect.Interface {
		if vt := reflect.TypeOf(v); vt.Implements(t) {
			dst.Set(reflect.ValueOf(v))
			return nil
		}
		return mismatch("")
	}
	if vt := reflect.TypeOf(v); vt == t {
		dst.Set(reflect.ValueOf(v))
		return nil
	}
	if d, ok := v.(*Dict); ok && t == dictType {
		// A Dict, not a struct of its fields; a copy, which a Set on it
		// would otherwise write through to d's index.
		dst.Set(reflect.ValueOf(d.clone()))
		return nil
	}
	if t == bigIntType || t == reflect.PointerTo(bigIntType) {
		b := toBig(v)
		if b == nil {
			return mismatch("")
		}
		if t == bigIntType {
			dst.Set(reflect.ValueOf(*b))
		} else {
			dst.Set(reflect.ValueOf(b))
		}
		return nil
	}
	switch dst.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := st.into(v, p.Elem(), path); err != nil {
			return err
		}
		dst.Set(p)
		return nil
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return mismatch("")
		}
		dst.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := v.(int64)
		if !ok {
			return mismatch(intMsg(v))
		}
		if dst.OverflowInt(i) {
			return mismatch(strconv.FormatInt(i, 10) + " overflows it")
		}
		dst.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		switch i := v.(type) {
		case int64:
			if i < 0 {
				return mismatch(strconv.FormatInt(i, 10) + " is negative")
			}
			u = uint64(i)
		case *big.Int:
			if !i.IsUint64() {
				return mismatch(i.String() + " overflows it")
			}
			u = i.Uint64()
		default:
			return mismatch("")
		}
		if dst.OverflowUint(u) {
			return mismatch(strconv.FormatUint(u, 10) + " overflows it")
		}
		dst.SetUint(u)
		return nil
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case *big.Int:
			f, _ = new(big.Float).SetInt(x).Float64()
		default:
			return mismatch("")
		}
		if t.Kind() == reflect.Float32 && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
			return mismatch("it overflows float32")
		}
		dst.SetFloat(f)
		return nil
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return mismatch("")
		}
		dst.SetString(s)
		return nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return intoBytes(v, dst, mismatch)
		}
		items, ok := sequence(v)
		if !ok {
			return mismatch("")
		}
		fill := func() error {
			for i, it := range items {
				if err := st.into(it, dst.Index(i), path+"["+strconv.Itoa(i)+"]"); err != nil {
					return err
				}
			}
			return nil
		}
		if dst.Kind() == reflect.Array {
			if len(items) != dst.Len() {
				return mismatch(fmt.Sprintf("%d items for %d", len(items), dst.Len()))
			}
			return fill() // an array is a value: each is its own
		}
		return st.intoShared(v, dst, func() error {
			dst.Set(reflect.MakeSlice(t, len(items), len(items)))
			return fill()
		})
	case reflect.Map:
		return st.intoShared(v, dst, func() error { return st.intoMap(v, dst, path, mismatch) })
	case reflect.Struct:
		all, ok := dictItems(v)
		if !ok {
			return mismatch("")
		}
		var err error
		fields := StructFields(t)
		all(func(k, val any) bool {
			name, ok := k.(string)
			if !ok {
				err = mismatch("a key is not a str")
				return false
			}
			for _, f := range fields {
				if f.Key == name {
					err = st.into(val, dst.Field(f.Index), path+"."+name)
					break
				}
			}
			return err == nil
		})
		return err
	}
	return mismatch("")
}

func intMsg(v any) string {
	if _, ok := v.(*big.Int); ok {
		return "it overflows int64"
	}
	return ""
}

func toBig(v any) *big.Int {
	switch x := v.(type) {
	case int64:
		return big.NewInt(x)
	case *big.Int:
		return new(big.Int).Set(x)
	}
	return nil
}

func intoBytes(v any, dst reflect.Value, mismatch func(string) error) error {
	var b []byte
	switch x := v.(type) {
	case ogórek.Bytes:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return mismatch("")
	}
	if dst.Kind() == reflect.Array {
		if len(b) != dst.Len() {
			return mismatch(fmt.Sprintf("%d bytes for %d", len(b), dst.Len()))
		}
		reflect.Copy(dst, reflect.ValueOf(b))
		return nil
	}
	if dst.Type().Elem() != reflect.TypeFor[byte]() {
		// a named byte type: copy element by element
		s := reflect.MakeSlice(dst.Type(), len(b), len(b))
		reflect.Copy(s, reflect.ValueOf(b))
		dst.Set(s)
		return nil
	}
	dst.SetBytes(append([]byte{}, b...))
	return nil
}

// mapKey converts k into a key of type t for a Go map.
func (st *intoState) mapKey(k any, t reflect.Type, path string) (reflect.Value, error) {
	kv := reflect.New(t).Elem()
	if err := st.into(k, kv, path+"[key]"); err != nil {
		return kv, err
	}
	if !kv.Comparable() {
		// a tuple key in a map[any]V: Go cannot hash a slice
		return kv, &MismatchError{Python: TypeName(k), Go: t.String(), Path: path + "[key]", Msg: "not usable as a Go map key"}
	}
	return kv, nil
}

// dictItems returns the pairs of a dict, a Dict or an ogórek.Dict.
func dictItems(v any) (func(yield func(k, v any) bool), bool) {
	switch d := v.(type) {
	case *Dict:
		return d.All(), true
	case ogórek.Dict:
		return d.Iter(), true
	}
	return nil, false
}

// sequence returns the items of a list, tuple, set or frozenset.
func sequence(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case ogórek.Tuple:
		return x, true
	case Set:
		return x, true
	case FrozenSet:
		return x, true
	}
	return nil, false
}

func (st *intoState) intoMap(v any, dst reflect.Value, path string, mismatch func(string) error) error {
	t := dst.Type()
	m := reflect.MakeMap(t)
	put := func(k, val any) error {
		kv, err := st.mapKey(k, t.Key(), path)
		if err != nil {
			return err
		}
		vv := reflect.New(t.Elem()).Elem()
		if err := st.into(val, vv, path+"["+fmt.Sprint(k)+"]"); err != nil {
			return err
		}
		m.SetMapIndex(kv, vv)
		return nil
	}
	if all, ok := dictItems(v); ok {
		var err error
		all(func(k, val any) bool {
			err = put(k, val)
			return err == nil
		})
		if err != nil {
			return err
		}
		dst.Set(m)
		return nil
	}
	switch v.(type) {
	case Set, FrozenSet:
		// a set fills a map[K]struct{}, or a map[K]bool with true
		isBool := t.Elem().Kind() == reflect.Bool
		if !isBool && t.Elem() != reflect.TypeFor[struct{}]() {
			return mismatch("a set fills only a map[K]struct{} or map[K]bool")
		}
		items, _ := sequence(v)
		for _, k := range items {
			kv, err := st.mapKey(k, t.Key(), path)
			if err != nil {
				return err
			}
			vv := reflect.New(t.Elem()).Elem()
			if isBool {
				vv.SetBool(true)
			}
			m.SetMapIndex(kv, vv)
		}
	default:
		return mismatch("")
	}
	dst.Set(m)
	return nil
}

// TypeName is the name of the Python type of a value of the model, as
// Python's type(v).__name__ gives it ("NoneType", "int", "dict"...; a
// class is named by its module and name, an instance of one as
// "module.name instance"), for error messages.
func TypeName(v any) string {
	switch x := v.(type) {
	case nil, ogórek.None:
		return "NoneType"
	case bool:
		return "bool"
	case int64, int, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case ogórek.Bytes:
		return "bytes"
	case []byte:
		return "bytearray"
	case []any:
		return "list"
	case ogórek.Tuple:
		return "tuple"
	case *Dict, ogórek.Dict:
		return "dict"
	case Set:
		return "set"
	case FrozenSet:
		return "frozenset"
	case ogórek.Class:
		return x.Module + "." + x.Name
	case ogórek.Call:
		return x.Callable.Module + "." + x.Callable.Name + " instance"
	case *Object:
		return x.Class.Module + "." + x.Class.Name + " instance"
	}
	return fmt.Sprintf("%T", v)
}

//go:build linux

package codec

import (
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// ErrUnsupportedType is returned for a type that cannot live in shared
// memory (see FixedTypeOf). The root package exports it under the same
// name.
var ErrUnsupportedType = errors.New("mp: type cannot live in shared memory")

// A FixedType describes a type that can live in shared memory, and travel
// as its memory (see RawChunks): its size and a fingerprint of its layout,
// which a decoder compares with the one the creator stored so that memory
// is never read as another type. Only integers, floats, complex numbers,
// bools, and arrays and structs made of those are fixed types.
type FixedType struct {
	Name string // as Go prints it, for messages
	Size uintptr
	FP   uint64 // never 0
	Err  error  // why the type cannot be shared (ErrUnsupportedType), or nil
}

var fixedTypes sync.Map // reflect.Type -> *FixedType

// FixedTypeOf checks T once and caches the answer.
func FixedTypeOf[T any]() *FixedType {
	t := reflect.TypeFor[T]()
	if ft, ok := fixedTypes.Load(t); ok {
		return ft.(*FixedType)
	}
	ft := &FixedType{Name: t.String(), Size: t.Size()}
	var desc strings.Builder
	if why := describeFixed(t, &desc); why != "" {
		ft.Err = fmt.Errorf("%w: %s %s", ErrUnsupportedType, t, why)
	} else if t.Size() == 0 {
		ft.Err = fmt.Errorf("%w: %s has size zero", ErrUnsupportedType, t)
	} else {
		h := fnv.New64a()
		h.Write([]byte(desc.String()))
		ft.FP = h.Sum64() | 1 // never 0
	}
	actual, _ := fixedTypes.LoadOrStore(t, ft)
	return actual.(*FixedType)
}

// describeFixed writes a canonical description of t's layout (kinds,
// sizes, field names and offsets, array lengths; not type names) to b. It
// returns why t cannot be shared, or "".
func describeFixed(t reflect.Type, b *strings.Builder) string {
	switch k := t.Kind(); k {
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		b.WriteString(k.String())
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(t.Size())))
		return ""
	case reflect.Array:
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(t.Len()))
		b.WriteByte(']')
		if why := describeFixed(t.Elem(), b); why != "" {
			return "has elements of type " + t.Elem().String() + ", which " + why
		}
		return ""
	case reflect.Struct:
		b.WriteString("struct/")
		b.WriteString(strconv.Itoa(int(t.Size())))
		b.WriteByte('{')
		for i := range t.NumField() {
			f := t.Field(i)
			b.WriteString(f.Name)
			b.WriteByte('@')
			b.WriteString(strconv.Itoa(int(f.Offset)))
			b.WriteByte(' ')
			if why := describeFixed(f.Type, b); why != "" {
				return "has field " + f.Name + " of type " + f.Type.String() + ", which " + why
			}
			b.WriteByte(';')
		}
		b.WriteByte('}')
		return ""
	case reflect.Pointer:
		return "is a pointer, an address that means nothing in another process"
	case reflect.UnsafePointer, reflect.Uintptr:
		return "is a " + k.String() + ", an address that means nothing in another process"
	case reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func:
		return "is a " + k.String() + ", which points to memory of this process only"
	}
	return "is not a fixed-size type"
}

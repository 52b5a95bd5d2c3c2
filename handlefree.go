//go:build linux

package mp

import (
	"reflect"
	"sync"
)

// Encoding and decoding through a handle session takes a global lock (see
// codec.go). Most messages cannot hold a handle at all: their types are
// checked once here, and such messages skip the session.

// mpPath is this package's import path: handles are the types of package
// mp that encode themselves.
var mpPath = reflect.TypeFor[Conn]().PkgPath()

var (
	freeToEncode sync.Map // reflect.Type → bool
	freeToDecode sync.Map
)

// handleFree reports whether a value of type t can never hold a handle.
// For decoding, interface types are free (the codec never makes a handle
// from an interface); for encoding they are not (they may hold anything).
func handleFree(t reflect.Type, decoding bool) bool {
	cache := &freeToEncode
	if decoding {
		cache = &freeToDecode
	}
	if t == nil {
		return true
	}
	if v, ok := cache.Load(t); ok {
		return v.(bool)
	}
	free := walkFree(t, decoding, map[reflect.Type]bool{})
	cache.Store(t, free)
	return free
}

func walkFree(t reflect.Type, decoding bool, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return true // a recursive type: decided where it started
	}
	seen[t] = true
	if isHandle(t) || isHandle(reflect.PointerTo(t)) {
		return false
	}
	switch t.Kind() {
	case reflect.Interface:
		return decoding
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return walkFree(t.Elem(), decoding, seen)
	case reflect.Map:
		return walkFree(t.Key(), decoding, seen) && walkFree(t.Elem(), decoding, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if !walkFree(t.Field(i).Type, decoding, seen) {
				return false
			}
		}
	}
	return true
}

var (
	marshalerType   = reflect.TypeFor[interface{ MarshalCBOR() ([]byte, error) }]()
	unmarshalerType = reflect.TypeFor[interface{ UnmarshalCBOR([]byte) error }]()
)

// isHandle reports whether t is one of this package's types that encode
// themselves (Conn, Lock, Queue...), which may carry a descriptor.
func isHandle(t reflect.Type) bool {
	named := t
	if t.Kind() == reflect.Pointer {
		named = t.Elem()
	}
	if named.PkgPath() != mpPath {
		return false
	}
	return t.Implements(marshalerType) || t.Implements(unmarshalerType)
}

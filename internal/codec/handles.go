//go:build linux

package codec

import (
	"reflect"
	"sync/atomic"
)

// Encoding and decoding through a handle session takes a global lock (see
// EncodeMessage). Most messages cannot hold a handle at all: their types
// are checked once here, and such messages skip the session.

// marker is the interface that the types carrying handles implement,
// named by SetHandleMarker. Its method is unexported in the package that
// declares those types (so that it is not part of their API), which is
// why this package cannot declare it: it is given as a type instead.
var marker atomic.Pointer[reflect.Type]

// SetHandleMarker names the interface that exactly the types which carry
// handles (encode themselves with EncodeHandle) implement, through their
// pointer or value. The root package calls it when it is initialised,
// before any message is encoded; until then no type carries handles.
func SetHandleMarker(iface reflect.Type) {
	if iface.Kind() != reflect.Interface {
		panic("codec: SetHandleMarker of a non-interface type " + iface.String())
	}
	marker.Store(&iface)
	typeInfos.clear()
}

// A typeInfo is what the codec learns once about the type of a message or
// item, looked up once per value: whether it may hold handles, and its
// fast plan (see fastPlan).
type typeInfo struct {
	freeToEncode, freeToDecode bool      // see HandleFree
	plan                       *fastPlan // the type's plan or, for a pointer, its element's; nil: the library
	isPtr                      bool
}

var typeInfos typeCache[*typeInfo]

// infoOf returns what the codec knows of t, which is not nil.
func infoOf(t reflect.Type) *typeInfo {
	return typeInfos.get(t, func(t reflect.Type) *typeInfo {
		i := &typeInfo{freeToEncode: walkFreeToEncode(t), freeToDecode: walkFreeToDecode(t)}
		if t.Kind() == reflect.Pointer {
			i.plan, i.isPtr = buildPlan(t.Elem()), true
		} else {
			i.plan = buildPlan(t)
		}
		return i
	})
}

// HandleFree reports whether a value of type t can never hold a handle.
// For decoding, interface types are free (the codec never makes a handle
// from an interface); for encoding they are not (they may hold anything).
func HandleFree(t reflect.Type, decoding bool) bool {
	if t == nil {
		return true
	}
	if decoding {
		return infoOf(t).freeToDecode
	}
	return infoOf(t).freeToEncode
}

func walkFreeToEncode(t reflect.Type) bool { return walkFree(t, false, map[reflect.Type]bool{}) }
func walkFreeToDecode(t reflect.Type) bool { return walkFree(t, true, map[reflect.Type]bool{}) }

func walkFree(t reflect.Type, decoding bool, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return true // a recursive type: decided where it started
	}
	seen[t] = true
	if isHandle(t) {
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

// isHandle reports whether t or *t implements the handle marker.
func isHandle(t reflect.Type) bool {
	m := marker.Load()
	if m == nil || t.Kind() == reflect.Interface {
		return false
	}
	return t.Implements(*m) || reflect.PointerTo(t).Implements(*m)
}

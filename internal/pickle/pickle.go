//go:build linux

// Package pickle reads and writes CPython's pickle format, so that Go
// exchanges values with Python's multiprocessing (Connection.send/recv and
// the manager protocol) without ever running anything a peer names.
//
// # Value model
//
// Decode returns, and Encode accepts, Go values; where Go has no type for a
// Python one, the value model of github.com/kisielk/og-rek (imported as
// ogórek) is used, plus four types of this package:
//
//	Python                 Decode gives            Encode also accepts
//	------                 ------------            -------------------
//	None                   nil (ogórek.None{} as   ogórek.None, nil pointer/map/slice
//	                       a dict key: see below)
//	bool                   bool
//	int                    int64, or *big.Int      intN, uintN, big.Int
//	                       when it does not fit
//	float                  float64                 float32
//	str                    string
//	bytes                  ogórek.Bytes
//	bytearray              []byte                  [N]byte
//	list                   []any                   []T, [N]T (T not byte)
//	tuple                  ogórek.Tuple
//	dict                   *Dict                   Dict, ogórek.Dict, map[K]V;
//	                                               a struct (below)
//	set                    Set
//	frozenset              FrozenSet
//	a class or function    ogórek.Class            (only if allowed)
//	f(*args)  (REDUCE)     ogórek.Call             (only if allowed)
//	cls.__new__(cls,*args) *Object (New set)       Object, *Object
//	  and/or BUILD state   *Object
//
// A struct is encoded as a dict of its exported fields; the key is the
// field's name, or the name in its `pickle:"name"` tag ("-" leaves the field
// out). Pointers and interfaces are followed. Dicts decode as *Dict,
// which keeps their pairs in the pickle's order, as CPython's dicts keep
// theirs, and Encode writes a Dict's pairs in its order (those of a Go map
// or an ogórek.Dict in no particular order, a struct's in field order). A
// Dict compares keys as Python does (1, 1.0 and True are one key) and
// takes tuple keys, which a Go map cannot; it hashes them with ogórek.Dict,
// which cannot hash nil, so None in a key (also in a tuple or call in a
// key) is ogórek.None{}. Dict keys and set elements are what Python can
// hash of the kinds above except frozensets (refused): None, bool, int,
// float, str, bytes, tuples of those, and allowed classes and calls.
//
// # Protocol
//
// Encode writes protocol 5. CPython 3.8 and later read it (the connection
// of 3.11–3.13 sends protocol 4, its default, and reads any protocol up to
// 5). Protocol 5 is the first with an opcode for bytearray (BYTEARRAY8),
// so nothing Encode writes for the value kinds above needs a global
// lookup on the Python side; out-of-band buffers are never used, and
// frames (optional in the format) are not written. Decode reads protocols
// 0 to 5 except persistent ids, the extension registry and out-of-band
// buffers, which it refuses.
//
// # Safety
//
// Nothing decoded is ever called or imported: a class or function in a
// pickle becomes an ogórek.Class value, and a call of it an ogórek.Call or
// an *Object. Even so, Decode refuses with a *ForbiddenError every class
// or function that is not allowed: the ones the codec itself turns into Go
// values (builtins set, frozenset, bytearray and bytes, and _codecs.encode,
// which protocols 0-2 use for bytes) and those listed in Options.Allow.
// Bounds are checked as the pickle is read, before anything of an
// announced size is allocated (*LimitError): the input size,
// the nesting depth, the memo size, the digits of a text integer, the
// values a walk of the result meets (MaxValues); every
// announced length (BINUNICODE8, BINBYTES8, LONG4, FRAME, ...) must fit in
// the rest of the input. Memory used by Decode is thus at most a small
// multiple of the input size (each opcode makes at most one value).
// A value that contains itself is refused (*FormatError), because a Go
// consumer walking it would never stop.
//
// # Why not og-rek's own coder
//
// The Decoder of og-rek v1.3.0 does not read the opcodes CPython uses for
// sets and frozensets in protocols 4 and 5 (EMPTY_SET, ADDITEMS,
// FROZENSET), nor NEWOBJ and BUILD (multiprocessing.managers.Token), and a
// list stored in the memo before its items are appended is seen empty when
// fetched again (pickle.dumps([a, a])). Its Encoder writes big ints as
// decimal text, which CPython 3.11 refuses beyond 4300 digits, has no set
// type, and recurses without a bound on a value that contains itself; its
// Dict has no order. So this package keeps og-rek's value model (with a
// Dict of its own that keeps the order) and has a coder of its own for
// the format.
package pickle

import (
	"fmt"

	ogórek "github.com/kisielk/og-rek"
)

// Set is a Python set: its elements in the order the pickle holds them.
type Set []any

// FrozenSet is a Python frozenset: its elements in the order the pickle
// holds them.
type FrozenSet []any

// Object is an instance of an allowed class that the pickle builds in more
// than one call: Class(*Args), or Class.__new__(Class, *Args) when New is
// set (NEWOBJ), and then, when State is not nil, BUILD with State (which
// Python hands to __setstate__, or merges into the instance's __dict__).
// A plain Class(*Args) without state decodes as an ogórek.Call instead.
type Object struct {
	Class ogórek.Class
	Args  ogórek.Tuple
	New   bool
	State any
}

// Default limits, used where Options leaves a field zero.
const (
	DefaultMaxSize   = 64 << 20 // bytes of one pickle
	DefaultMaxDepth  = 1000     // CPython's own recursion limit: it cannot pickle deeper
	DefaultMaxMemo   = 1 << 20  // memo entries
	DefaultMaxValues = 64 << 20 // values met by walking the result
	maxTextDigits    = 4300     // CPython's int_max_str_digits: longer text ints cost quadratic time
)

// Options tune Decode and Encode; the zero value is the default.
type Options struct {
	// Allow lists the classes and functions, besides the builtin ones the
	// codec turns into Go values, that a decoded pickle may name. They
	// come out as ogórek.Class, ogórek.Call or *Object; nothing is run.
	Allow []ogórek.Class

	// MaxSize is the largest pickle Decode reads, in bytes
	// (DefaultMaxSize if 0).
	MaxSize int

	// MaxDepth is the deepest nesting of containers Decode and Encode
	// accept (DefaultMaxDepth if 0).
	MaxDepth int

	// MaxMemo is the most memo entries Decode keeps (DefaultMaxMemo if 0).
	MaxMemo int

	// MaxValues is the most values a walk of Decode's result meets,
	// counting a value shared in the pickle once per place it appears
	// (DefaultMaxValues if 0): a walk of what Decode accepts is bounded.
	MaxValues int
}

func (o *Options) maxSize() int   { return orDefault(o.MaxSize, DefaultMaxSize) }
func (o *Options) maxDepth() int  { return orDefault(o.MaxDepth, DefaultMaxDepth) }
func (o *Options) maxMemo() int   { return orDefault(o.MaxMemo, DefaultMaxMemo) }
func (o *Options) maxValues() int { return orDefault(o.MaxValues, DefaultMaxValues) }

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// builtinCalls are the globals Decode turns into Go values itself, under
// both spellings: protocols 0-2 written by Python 3 name the builtins
// module __builtin__ (fix_imports).
var builtinCalls = map[ogórek.Class]bool{
	{Module: "builtins", Name: "set"}:          true,
	{Module: "builtins", Name: "frozenset"}:    true,
	{Module: "builtins", Name: "bytearray"}:    true,
	{Module: "builtins", Name: "bytes"}:        true,
	{Module: "__builtin__", Name: "set"}:       true,
	{Module: "__builtin__", Name: "frozenset"}: true,
	{Module: "__builtin__", Name: "bytearray"}: true,
	{Module: "__builtin__", Name: "bytes"}:     true,
	{Module: "_codecs", Name: "encode"}:        true,
}

// ForbiddenError reports a pickle naming a class or function that is not
// allowed (or using a mechanism that reaches outside the pickle: a
// persistent id, the extension registry, an out-of-band buffer; then
// Module is empty and Name says which).
type ForbiddenError struct {
	Module, Name string
}

func (e *ForbiddenError) Error() string {
	if e.Module == "" {
		return fmt.Sprintf("pickle: %s is not allowed", e.Name)
	}
	return fmt.Sprintf("pickle: global %s.%s is not allowed", e.Module, e.Name)
}

// LimitError reports a pickle, or a value to encode, beyond a limit:
// What is "size", "depth", "memo", "values", "length" (an announced
// length beyond the input) or "digits"; Got is what was found or announced, Max the limit.
type LimitError struct {
	What     string
	Got, Max int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("pickle: %s %d exceeds the limit %d", e.What, e.Got, e.Max)
}

// FormatError reports a malformed pickle: Offset is where in the input the
// opcode Op that failed starts.
type FormatError struct {
	Offset int
	Op     byte
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("pickle: offset %d, opcode 0x%02x: %s", e.Offset, e.Op, e.Msg)
}

// EncodeError reports a Go value Encode cannot write: Type is its Go
// type, Msg why.
type EncodeError struct {
	Type string
	Msg  string
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("pickle: cannot encode %s: %s", e.Type, e.Msg)
}

//go:build linux

package manager

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
)

// Values of CPython clients. The server stores every value as CBOR (see
// wire.go), whoever put it there, so that Go and Python clients share the
// objects: a value a Python client sends is turned into the CBOR a Go
// client would store for the same value, and back when it is read.
//
//	Python              stored as (CBOR)           Go reads it as
//	None                null                       nil, a zero value
//	bool                true / false               bool
//	int                 integer (bignum past 64 b) intN, uintN, big.Int
//	float               float (shortest exact)     float64
//	str                 text                       string
//	bytes, bytearray    byte string                []byte
//	list, tuple         array                      []T
//	dict                map (in the dict's order)  map[K]V, a struct
//	set, frozenset      tag 258 of an array        (a CBOR set)
//
// Encoding follows codec.DetMarshal (shortest numbers), so a key a Python
// client stores is the same key as the Go value that encodes to the same
// bytes: d["a"] from Python and Dict[string, V].Get("a") from Go meet.
// But a dict keeps its order, as CPython's server keeps it, where
// DetMarshal sorts a map's keys: no key holds a map (a dict is not
// hashable), and where stored values are compared (a list's index,
// count, remove and in; a Value's CompareAndSwap) maps are equal in any
// order (sameStored). Reading back, an array is a list
// (a tuple in a dict key or a set, where Python needs something hashable),
// a byte string is bytes. Python's own equalities across types (1 == 1.0
// == True as dict keys) do not hold in the server: keys are equal when
// their encodings are.
//
// A proxy inside a value is stored as a token (see appendProxy and
// pyProxy), whichever language stored it.

// cborSetTag is the CBOR tag of a set (IANA registry: "Mathematical finite
// set").
const cborSetTag = 258

// errPyValue reports a value that cannot cross between Python and the
// server's store; the Python client gets a TypeError.
type pyValueError struct{ msg string }

func (e *pyValueError) Error() string { return e.msg }

// pyMaxDepth bounds the nesting of values in both directions, as the codec
// bounds the CBOR it reads.
const pyMaxDepth = codec.MaxDepth

// appendPy appends the stored (CBOR) form of the Python value v.
func appendPy(c *sconn, b []byte, v any, depth int) ([]byte, error) {
	if depth > pyMaxDepth {
		return b, &pyValueError{"value nested too deeply for the manager"}
	}
	switch v := v.(type) {
	case nil, ogórek.None:
		return append(b, codec.Null), nil
	case bool:
		return codec.AppendBool(b, v), nil
	case int64:
		return codec.AppendInt(b, v), nil
	case int:
		return codec.AppendInt(b, int64(v)), nil
	case *big.Int:
		if v.IsInt64() {
			return codec.AppendInt(b, v.Int64()), nil
		}
		if v.IsUint64() {
			return codec.AppendUint(b, v.Uint64()), nil
		}
		return appendDet(b, v)
	case float64:
		return appendDet(b, v)
	case string:
		return codec.AppendText(b, v), nil
	case ogórek.Bytes:
		return append(codec.AppendHead(b, codec.MajorBytes, uint64(len(v))), v...), nil
	case []byte:
		return append(codec.AppendHead(b, codec.MajorBytes, uint64(len(v))), v...), nil
	case []any:
		return appendPyArray(c, b, v, depth)
	case ogórek.Tuple:
		return appendPyArray(c, b, v, depth)
	case pickle.Set:
		return appendPySet(c, b, v, depth)
	case pickle.FrozenSet:
		return appendPySet(c, b, v, depth)
	case *pickle.Dict:
		return appendPyDict(c, b, v, depth)
	case ogórek.Call:
		if v.Callable == pyRebuildProxy {
			return appendProxy(c, b, v)
		}
	}
	return b, &pyValueError{fmt.Sprintf("a %s cannot be stored in the manager", pickle.TypeName(v))}
}

func appendDet(b []byte, v any) ([]byte, error) {
	e, err := codec.DetMarshal(v)
	if err != nil {
		return b, &pyValueError{err.Error()}
	}
	return append(b, e...), nil
}

func appendPyArray(c *sconn, b []byte, items []any, depth int) ([]byte, error) {
	b = codec.AppendHead(b, codec.MajorArray, uint64(len(items)))
	var err error
	for _, it := range items {
		if b, err = appendPy(c, b, it, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendPySet writes a set as tag 258 of the array of its elements,
// sorted by their encodings so that equal sets are equal bytes.
func appendPySet(c *sconn, b []byte, items []any, depth int) ([]byte, error) {
	elems := make([][]byte, len(items))
	for i, it := range items {
		e, err := appendPy(c, nil, it, depth+1)
		if err != nil {
			return b, err
		}
		elems[i] = e
	}
	slices.SortFunc(elems, bytes.Compare)
	elems = slices.CompactFunc(elems, bytes.Equal)
	b = codec.AppendHead(b, codec.MajorTag, cborSetTag)
	b = codec.AppendHead(b, codec.MajorArray, uint64(len(elems)))
	for _, e := range elems {
		b = append(b, e...)
	}
	return b, nil
}

// appendPyDict writes a map whose pairs are in the dict's order, so that
// Python reads the dict back in the order it was made, as from CPython's
// server. (Go's maps and structs have no order: Go clients read it as
// any map. A map is never a key, which must be the same bytes however it
// was made; where stored values are compared, sameStored lets the order
// of maps differ.)
func appendPyDict(c *sconn, b []byte, d *pickle.Dict, depth int) ([]byte, error) {
	start := len(b)
	b = codec.AppendHead(b, codec.MajorMap, uint64(d.Len()))
	keys := make([][2]int, 0, d.Len()) // where each key is in b
	var err error
	for k, v := range d.All() {
		at := len(b)
		if b, err = appendPy(c, b, k, depth+1); err != nil {
			return b[:start], err
		}
		keys = append(keys, [2]int{at, len(b)})
		if b, err = appendPy(c, b, v, depth+1); err != nil {
			return b[:start], err
		}
	}
	key := func(i int) []byte { return b[keys[i][0]:keys[i][1]] }
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return bytes.Compare(key(i), key(j)) })
	for i := 1; i < len(order); i++ {
		if bytes.Equal(key(order[i-1]), key(order[i])) {
			// Two keys that the dict (Python's equality) holds apart
			// but that the manager stores alike: a map must not repeat
			// a key. Two NaNs are such keys ({nan: 1, float('nan'): 2}:
			// NaN equals nothing, in Python and in pickle.Dict).
			return b[:start], &pyValueError{"dict keys that are distinct in Python but one key in the manager"}
		}
	}
	return b, nil
}

// sameStored reports whether two stored values are equal, as Python's ==
// compares dicts: the same bytes, or the same but for the order of the
// pairs of maps (a dict a Python client stores keeps its order: see
// appendPyDict). Where they differ, only values of the same length (a
// reordering keeps it) that both hold a map cost the two a reordered copy
// each; lists of lists or tuples, searched item by item, cost a walk each.
func sameStored(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) != len(b) || !holdsMap(a, 0) || !holdsMap(b, 0) {
		return false
	}
	ca, _, err1 := appendSorted(nil, a, 0)
	cb, _, err2 := appendSorted(nil, b, 0)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// holdsMap reports whether the item at the start of b is or holds a map,
// before anything malformed in it (which appendSorted refuses).
func holdsMap(b []byte, depth int) bool {
	found, _ := walkForMap(b, depth)
	return found
}

// walkForMap reports whether the item at the start of b is or holds a
// map, without a copy, and else its length (0: malformed).
func walkForMap(b []byte, depth int) (bool, int) {
	if depth > pyMaxDepth {
		return false, 0
	}
	major, arg, n, err := codec.Head(b)
	if err != nil {
		return false, 0
	}
	switch major {
	case codec.MajorMap:
		return true, 0
	case codec.MajorArray, codec.MajorTag:
		if major == codec.MajorTag {
			arg = 1 // its content
		}
		for ; arg > 0; arg-- {
			found, m := walkForMap(b[n:], depth+1)
			if found || m == 0 {
				return found, 0
			}
			n += m
		}
		return false, n
	}
	m, err := codec.Skip(b, depth)
	if err != nil {
		return false, 0
	}
	return false, m
}

// appendSorted appends the item at the start of b with the pairs of its
// maps sorted bytewise by key, as codec.DetMarshal writes them, and
// returns its length in b.
func appendSorted(out, b []byte, depth int) ([]byte, int, error) {
	if depth > pyMaxDepth {
		return out, 0, codec.ErrTooDeep
	}
	major, arg, n, err := codec.Head(b)
	if err != nil {
		return out, 0, err
	}
	switch major {
	case codec.MajorArray, codec.MajorTag:
		if major == codec.MajorArray && arg > uint64(len(b)) {
			return out, 0, codec.ErrMalformed
		}
		if major == codec.MajorTag {
			arg = 1 // its content
		}
		out = append(out, b[:n]...)
		for ; arg > 0; arg-- {
			var m int
			if out, m, err = appendSorted(out, b[n:], depth+1); err != nil {
				return out, 0, err
			}
			n += m
		}
		return out, n, nil
	case codec.MajorMap:
		if arg > uint64(len(b)) {
			return out, 0, codec.ErrMalformed
		}
		head := b[:n]
		pairs := make([][2][]byte, arg)
		for i := range pairs {
			for j := range pairs[i] {
				var m int
				if pairs[i][j], m, err = appendSorted(nil, b[n:], depth+1); err != nil {
					return out, 0, err
				}
				n += m
			}
		}
		slices.SortFunc(pairs, func(x, y [2][]byte) int { return bytes.Compare(x[0], y[0]) })
		out = append(out, head...)
		for _, p := range pairs {
			out = append(append(out, p[0]...), p[1]...)
		}
		return out, n, nil
	}
	m, err := codec.Skip(b, depth)
	if err != nil {
		return out, 0, err
	}
	return append(out, b[:m]...), m, nil
}

// encodePy returns the stored form of v, received on c (nil: no proxies
// allowed in v).
func encodePy(c *sconn, v any) ([]byte, error) { return appendPy(c, nil, v, 0) }

// encodePyItems returns the stored form of each of items.
func encodePyItems(c *sconn, items []any) ([][]byte, error) {
	out := make([][]byte, len(items))
	for i, it := range items {
		var err error
		if out[i], err = encodePy(c, it); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// errGoProxy is the error for a stored value that holds a proxy Python
// cannot use: of another server, or of a type registered in Go.
var errGoProxy = &pyValueError{"the value holds a proxy that Python cannot use (another manager's, or of a Go type)"}

// decodePy returns the Python value of the stored item b, to be sent on
// c.
func decodePy(c *sconn, b []byte) (any, error) {
	v, n, err := readPy(c, b, false, 0)
	if err == nil && n != len(b) {
		err = codec.ErrMalformed
	}
	return v, err
}

// readPy reads the stored item at the start of b as a Python value and
// returns it and its length. hashable asks for a value Python can hash (a
// dict key, a set element): arrays become tuples, sets frozensets.
func readPy(c *sconn, b []byte, hashable bool, depth int) (any, int, error) {
	if depth > pyMaxDepth {
		return nil, 0, codec.ErrTooDeep
	}
	major, arg, n, err := codec.Head(b)
	if err != nil {
		return nil, 0, err
	}
	switch major {
	case codec.MajorUint:
		if arg > math.MaxInt64 {
			return new(big.Int).SetUint64(arg), n, nil
		}
		return int64(arg), n, nil
	case codec.MajorNegInt:
		if arg > math.MaxInt64 {
			x := new(big.Int).SetUint64(arg)
			return x.Neg(x).Sub(x, big.NewInt(1)), n, nil
		}
		return -1 - int64(arg), n, nil
	case codec.MajorBytes, codec.MajorText:
		if arg > uint64(len(b)-n) {
			return nil, 0, codec.ErrMalformed
		}
		s := string(b[n : n+int(arg)])
		if major == codec.MajorBytes {
			return ogórek.Bytes(s), n + int(arg), nil
		}
		return s, n + int(arg), nil
	case codec.MajorArray:
		if arg > uint64(len(b)) {
			return nil, 0, codec.ErrMalformed
		}
		items := make([]any, 0, arg)
		for ; arg > 0; arg-- {
			v, m, err := readPy(c, b[n:], hashable, depth+1)
			if err != nil {
				return nil, 0, err
			}
			items = append(items, v)
			n += m
		}
		if hashable {
			return ogórek.Tuple(items), n, nil
		}
		return items, n, nil
	case codec.MajorMap:
		if hashable {
			return nil, 0, &pyValueError{"a dict cannot be a dict key in Python"}
		}
		if arg > uint64(len(b)) {
			return nil, 0, codec.ErrMalformed
		}
		pairs := make([][2]any, 0, arg)
		for ; arg > 0; arg-- {
			k, m, err := readPy(c, b[n:], true, depth+1)
			if err != nil {
				return nil, 0, err
			}
			n += m
			v, m, err := readPy(c, b[n:], false, depth+1)
			if err != nil {
				return nil, 0, err
			}
			n += m
			pairs = append(pairs, [2]any{k, v})
		}
		return pyDict(pairs), n, nil
	case codec.MajorTag:
		switch arg {
		case codec.TokenTag:
			m, err := codec.Skip(b, depth)
			if err != nil {
				return nil, 0, err
			}
			t, err := parseToken(b[:m])
			if err != nil {
				return nil, 0, err
			}
			v, err := pyProxy(c, &t)
			return v, m, err
		case 2, 3: // bignums
			m, err := codec.Skip(b, depth)
			if err != nil {
				return nil, 0, err
			}
			var x big.Int
			if err := codec.Unmarshal(b[:m], &x); err != nil {
				return nil, 0, err
			}
			return &x, m, nil
		case cborSetTag:
			items, m, err := readPy(c, b[n:], true, depth+1)
			if err != nil {
				return nil, 0, err
			}
			elems, ok := items.(ogórek.Tuple)
			if !ok {
				return nil, 0, codec.ErrMalformed
			}
			if hashable {
				// ogórek.Dict cannot hash a frozenset.
				return nil, 0, &pyValueError{"a set inside a dict key or a set cannot be read from Python"}
			}
			return pickle.Set(elems), n + m, nil
		}
		// Another tag (a time, ...): its content.
		v, m, err := readPy(c, b[n:], hashable, depth+1)
		return v, n + m, err
	}
	// Simple values and floats.
	switch b[0] {
	case codec.False:
		return false, 1, nil
	case codec.True:
		return true, 1, nil
	case codec.Null, codec.Undefined:
		if hashable {
			return ogórek.None{}, 1, nil // a key of ogórek.Dict, which cannot hash nil
		}
		return nil, 1, nil
	}
	if ai := b[0] & 31; ai >= 25 && ai <= 27 {
		var f float64
		if err := codec.Unmarshal(b[:n], &f); err != nil {
			return nil, 0, err
		}
		return f, n, nil
	}
	return nil, 0, codec.ErrMalformed
}

// pyDictClass is Python's dict, called to make the dicts the server
// sends (see pyDict).
var pyDictClass = ogórek.Class{Module: "builtins", Name: "dict"}

// pyDict is the dict of pairs, in their order, as the server sends it:
// dict([(k, v), ...]), which the client's unpickler builds in that order.
// (A pickle.Dict, which is written in its order too, hashes its keys as
// it is made, and a stored key may be a proxy, a call that ogórek.Dict's
// hash is not made for; dict(...) hashes nothing in the server.)
func pyDict(pairs [][2]any) any {
	items := make([]any, len(pairs))
	for i, p := range pairs {
		items[i] = ogórek.Tuple{p[0], p[1]}
	}
	return ogórek.Call{Callable: pyDictClass, Args: ogórek.Tuple{items}}
}

// dictPairs returns the pairs of a dict made by pyDict.
func dictPairs(v ogórek.Call) ([]any, bool) {
	if v.Callable != pyDictClass || len(v.Args) != 1 {
		return nil, false
	}
	items, ok := v.Args[0].([]any)
	return items, ok
}

// pyInt returns v as an int64 if it is a Python int (or bool) that fits.
func pyInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	case *big.Int:
		if v.IsInt64() {
			return v.Int64(), true
		}
	}
	return 0, false
}

// pyIntClamped returns v if it is a Python int, an int beyond int64
// clamped to its ends.
func pyIntClamped(v any) (int64, bool) {
	if b, ok := v.(*big.Int); ok && !b.IsInt64() {
		if b.Sign() < 0 {
			return math.MinInt64, true
		}
		return math.MaxInt64, true
	}
	return pyInt(v)
}

// pyIntIn returns v if it is a Python int in [lo, hi]: a TypeError for
// a value that is not an int, a ValueError for an int out of the range
// (one beyond int64 too), as CPython raises them for a count (what
// names the count).
func pyIntIn(v any, lo, hi int64, what string) (int64, error) {
	n, ok := pyInt(v)
	if _, isBig := v.(*big.Int); !ok && !isBig {
		return 0, &pyTypeError{fmt.Sprintf("%s must be an int, not %s", what, pickle.TypeName(v))}
	}
	if !ok || n < lo || n > hi {
		return 0, &pyOutOfRange{fmt.Sprintf("%s must be in [%d, %d]", what, lo, hi)}
	}
	return n, nil
}

// pyExc is an error the Python client gets as the exception cls(msg).
type pyExc struct {
	cls ogórek.Class
	msg string
}

func (e *pyExc) Error() string { return e.cls.Name + ": " + e.msg }

// CPython's errors for an int beyond int64 (its ssize_t) where a list
// takes an index or a count: OverflowError for insert's and pop's index
// and for a repeat count, IndexError for an item's index.
var (
	errSsize      = &pyExc{excOverflowError, "Python int too large to convert to C ssize_t"}
	errRepeatSize = &pyExc{excOverflowError, "cannot fit 'int' into an index-sized integer"}
	errIndexSize  = &pyExc{excIndexError, "cannot fit 'int' into an index-sized integer"}
)

// pyBeyondInt64 reports whether v is an int beyond int64.
func pyBeyondInt64(v any) bool {
	b, ok := v.(*big.Int)
	return ok && !b.IsInt64()
}

// pyOutOfRange is an argument of the right type out of its range; the
// Python client gets a ValueError.
type pyOutOfRange struct{ msg string }

func (e *pyOutOfRange) Error() string { return e.msg }

// pyFloat returns v as a float64 if it is a Python number.
func pyFloat(v any) (float64, bool) {
	if i, ok := pyInt(v); ok {
		return float64(i), true
	}
	switch v := v.(type) {
	case float64:
		return v, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(v).Float64()
		return f, true
	}
	return 0, false
}

// pySeq returns the items of a Python list or tuple.
func pySeq(v any) ([]any, bool) {
	switch v := v.(type) {
	case []any:
		return v, true
	case ogórek.Tuple:
		return v, true
	}
	return nil, false
}

// pyCompare orders two Python values as Python's < does, for list.sort:
// numbers by value, str, bytes, lists and tuples (of the same kind) in
// order; other pairs cannot be compared.
func pyCompare(a, b any) (int, error) {
	if x, ok := pyInt(a); ok {
		if y, ok := pyInt(b); ok {
			return cmpOrdered(x, y), nil
		}
	}
	if x, ok := pyFloat(a); ok {
		if y, ok := pyFloat(b); ok {
			if xb, ok := a.(*big.Int); ok {
				if yb, ok := b.(*big.Int); ok {
					return xb.Cmp(yb), nil
				}
			}
			return cmpOrdered(x, y), nil
		}
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return cmpOrdered(x, y), nil
		}
	case ogórek.Bytes:
		if y, ok := b.(ogórek.Bytes); ok {
			return cmpOrdered(x, y), nil
		}
	case []any, ogórek.Tuple:
		xs, _ := pySeq(a)
		ys, ok := pySeq(b)
		if ok && pickle.TypeName(a) == pickle.TypeName(b) {
			for i := 0; i < len(xs) && i < len(ys); i++ {
				c, err := pyCompare(xs[i], ys[i])
				if err != nil || c != 0 {
					return c, err
				}
			}
			return cmpOrdered(len(xs), len(ys)), nil
		}
	}
	return 0, &pyTypeError{fmt.Sprintf("'<' not supported between instances of '%s' and '%s'", pickle.TypeName(a), pickle.TypeName(b))}
}

func cmpOrdered[T int | int64 | float64 | string | ogórek.Bytes](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// pyTypeError is an error the Python client gets as a TypeError.
type pyTypeError struct{ msg string }

func (e *pyTypeError) Error() string { return e.msg }

// errAs reports whether err is a *pyValueError or *pyTypeError, the
// errors a Python client gets as a TypeError.
func isPyTypeError(err error) bool {
	var ve *pyValueError
	var te *pyTypeError
	return errors.As(err, &ve) || errors.As(err, &te)
}

// pyRepr is Python's repr of a value of the model, for the __repr__ and
// __str__ of proxies (print(d) in a client).
func pyRepr(v any) string {
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

func writeRepr(b *strings.Builder, v any, depth int) {
	if depth > pyMaxDepth {
		b.WriteString("...")
		return
	}
	seq := func(open, close string, items []any) {
		b.WriteString(open)
		for i, it := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, it, depth+1)
		}
		if len(items) == 1 && open == "(" {
			b.WriteByte(',')
		}
		b.WriteString(close)
	}
	switch v := v.(type) {
	case nil, ogórek.None:
		b.WriteString("None")
	case bool:
		if v {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case *big.Int:
		b.WriteString(v.String())
	case float64:
		b.WriteString(floatRepr(v))
	case string:
		b.WriteString(quoteRepr(v, ""))
	case ogórek.Bytes:
		b.WriteString(quoteRepr(string(v), "b"))
	case []any:
		seq("[", "]", v)
	case ogórek.Tuple:
		seq("(", ")", v)
	case pickle.Set:
		if len(v) == 0 {
			b.WriteString("set()")
			return
		}
		seq("{", "}", v)
	case ogórek.Call:
		items, ok := dictPairs(v)
		if !ok {
			fmt.Fprintf(b, "<%s>", pickle.TypeName(v))
			return
		}
		b.WriteByte('{')
		for i, it := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			kv := it.(ogórek.Tuple)
			writeRepr(b, kv[0], depth+1)
			b.WriteString(": ")
			writeRepr(b, kv[1], depth+1)
		}
		b.WriteByte('}')
	default:
		fmt.Fprintf(b, "<%s>", pickle.TypeName(v))
	}
}

// floatRepr writes f as Python's repr does: the shortest digits that read
// back as f, fixed between 1e-4 and 1e16, with an exponent outside.
func floatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e // Go writes 1e+16 and 1e-05 as Python does
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// quoteRepr quotes s as Python's repr of a str (prefix "") or bytes
// (prefix "b") does.
func quoteRepr(s, prefix string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteByte(q)
	esc := func(r rune) {
		switch {
		case r == '\\' || r == rune(q):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || prefix == "b" && r >= 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	if prefix == "b" {
		for i := 0; i < len(s); i++ {
			esc(rune(s[i]))
		}
	} else {
		for _, r := range s {
			esc(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// ---- proxies inside values ----

// Proxies stored in values. A Python client pickles a proxy as
// RebuildProxy(ProxyType, Token(typeid, address, id), "pickle", kwds);
// one of an object of this server is stored as the token a Go proxy is
// stored as (wire.go), which keeps the object alive while stored, and
// which both Go and Python clients read back as a proxy. A Python client
// reads it as that RebuildProxy call, which makes the proxy in the client
// — with the client process's authkey (multiprocessing's
// current_process().authkey), as CPython's proxies inside values do.
var (
	pyRebuildProxy = ogórek.Class{Module: "multiprocessing.managers", Name: "RebuildProxy"}
	pyAutoProxy    = ogórek.Class{Module: "multiprocessing.managers", Name: "AutoProxy"}
)

// pyProxyTypes are, by kind, the typeid and proxy type of Python's
// proxies (AutoProxy for queues, as SyncManager registers them).
var pyProxyTypes = map[string][2]string{
	kindDict: {"dict", "DictProxy"}, kindList: {"list", "ListProxy"},
	kindValue: {"Value", "ValueProxy"}, kindArray: {"Array", "ArrayProxy"},
	kindNamespace: {"Namespace", "NamespaceProxy"}, kindQueue: {"Queue", "AutoProxy"},
	kindJoinableQueue: {"JoinableQueue", "AutoProxy"}, kindLock: {"Lock", "AcquirerProxy"},
	kindRLock: {"RLock", "AcquirerProxy"}, kindSemaphore: {"Semaphore", "AcquirerProxy"},
	kindBounded: {"BoundedSemaphore", "AcquirerProxy"}, kindCondition: {"Condition", "ConditionProxy"},
	kindEvent: {"Event", "EventProxy"}, kindBarrier: {"Barrier", "BarrierProxy"},
	kindIterator: {"Iterator", "IteratorProxy"},
}

// pyProxyClasses are the classes a stored proxy's pickle may name.
func pyProxyClasses() []ogórek.Class {
	seen := map[string]bool{}
	cs := []ogórek.Class{pyRebuildProxy}
	for _, t := range pyProxyTypes {
		if !seen[t[1]] {
			seen[t[1]] = true
			cs = append(cs, ogórek.Class{Module: "multiprocessing.managers", Name: t[1]})
		}
	}
	return cs
}

// appendProxy appends the token of the proxy that call rebuilds: an
// object of this server, which the client must name by its id.
func appendProxy(c *sconn, b []byte, call ogórek.Call) ([]byte, error) {
	if c == nil || len(call.Args) != 4 {
		return b, &pyValueError{"a proxy cannot be stored here"}
	}
	id, ok := tokenIdent(call.Args[1])
	o := c.s.lookup(id)
	if !ok || o == nil {
		return b, &pyValueError{"a proxy of an object that is not in this manager cannot be stored in it"}
	}
	return appendToken(b, &token{Network: c.network, Address: c.address, Instance: c.s.instance, ID: id, Kind: o.kind}), nil
}

// pyProxy is the Python value of a stored token of this server: the call
// that rebuilds its proxy in the client.
func pyProxy(c *sconn, t *token) (any, error) {
	pt, ok := pyProxyTypes[t.Kind]
	if c == nil || t.Instance != c.s.instance || !ok {
		return nil, errGoProxy
	}
	kwds := &pickle.Dict{}
	if pt[1] == "AutoProxy" {
		kwds.Set("exposed", ogórek.Tuple(pyExposedTuple(t.Kind)))
	}
	tok := &pickle.Object{Class: pyTokenClass, New: true,
		State: ogórek.Tuple{pt[0], pyAddress(c.network, c.address), pyIdentOf(t.ID)}}
	return ogórek.Call{Callable: pyRebuildProxy, Args: ogórek.Tuple{
		ogórek.Class{Module: "multiprocessing.managers", Name: pt[1]}, tok, "pickle", kwds}}, nil
}

// pyAddress is a server address as Python's multiprocessing writes it: a
// unix socket's path ("\x00name" for an abstract "@name"), or (host, port).
func pyAddress(network, address string) any {
	if network == "unix" {
		if rest, ok := strings.CutPrefix(address, "@"); ok {
			return "\x00" + rest
		}
		return address
	}
	host, port, err := net.SplitHostPort(address)
	p, err2 := strconv.Atoi(port)
	if err != nil || err2 != nil {
		return address
	}
	return ogórek.Tuple{host, int64(p)}
}

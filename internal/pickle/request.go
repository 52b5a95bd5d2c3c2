//go:build linux

package pickle

import (
	"encoding/binary"
	"math"
	"reflect"
	"unsafe"
)

// A Request is a call as CPython's manager proxies pickle it, (ident,
// name, args, {}), in its most common shape, which DecodeRequest reads
// without the general decoder: a str ident and name, at most
// MaxRequestArgs arguments that are None, bool, int of up to 32 bits,
// float or str, and no keyword arguments.
type Request struct {
	Ident string
	Name  string
	Args  [MaxRequestArgs]any
	NArgs int

	names [4]string // the last method names, most recent first
}

// MaxRequestArgs is the most arguments a Request holds: CPython pickles
// a tuple of up to 3 items with TUPLE1-3, longer ones with MARK ... TUPLE.
const MaxRequestArgs = 3

// DecodeRequest decodes data into r if it is a pickle of a Request's
// shape, as protocol 4 or 5 writes it (with or without a frame, each
// value memoized or not), and reports whether it did; false leaves r
// meaningless and says nothing about data, which Decode then reads (it
// reads every pickle DecodeRequest does, to the same values: see
// FuzzDecodeRequest). The Ident and Name r held are kept when data
// repeats them, so that a connection's calls on one object cost no
// allocation for them.
func DecodeRequest(data []byte, r *Request) bool {
	if len(data) < 2 || data[0] != opProto || data[1] < 4 || data[1] > highestProtocol {
		return false
	}
	p := data[2:]
	if len(p) > 0 && p[0] == opFrame {
		if len(p) < 9 || binary.LittleEndian.Uint64(p[1:9]) != uint64(len(p)-9) {
			return false
		}
		p = p[9:]
	}
	if len(p) == 0 || p[0] != opMark {
		return false
	}
	p = p[1:]
	var ok bool
	if p, ok = requestStr(p, &r.Ident); !ok {
		return false
	}
	if p, ok = r.name(p); !ok {
		return false
	}
	n := 0
	for len(p) > 0 && n < MaxRequestArgs && p[0] != opEmptyTuple && (p[0] < opTuple1 || p[0] > opTuple3) {
		if p, ok = requestScalar(p, &r.Args[n]); !ok {
			return false
		}
		n++
	}
	switch {
	case len(p) == 0:
		return false
	case p[0] == opEmptyTuple && n == 0, p[0] >= opTuple1 && p[0] <= opTuple3 && int(p[0]-opTuple1)+1 == n:
		p = memoized(p[1:])
	default:
		return false
	}
	clear(r.Args[n:])
	r.NArgs = n
	if len(p) < 1 || p[0] != opEmptyDict {
		return false
	}
	p = memoized(p[1:])
	if len(p) < 1 || p[0] != opTuple {
		return false
	}
	p = memoized(p[1:])
	return len(p) == 1 && p[0] == opStop
}

// name reads the method's name: one of the last few names costs no
// allocation (a proxy alternates between a few methods).
func (r *Request) name(p []byte) ([]byte, bool) {
	b, rest, ok := shortStr(p)
	if !ok {
		return p, false
	}
	for i, n := range r.names {
		if n == string(b) {
			copy(r.names[1:i+1], r.names[:i])
			r.names[0], r.Name = n, n
			return rest, true
		}
	}
	if !pyUTF8(unsafe.String(unsafe.SliceData(b), len(b))) {
		return p, false
	}
	s := string(b)
	copy(r.names[1:], r.names[:len(r.names)-1])
	r.names[0], r.Name = s, s
	return rest, true
}

// memoized skips a MEMOIZE: nothing fetches from the memo in a Request.
func memoized(p []byte) []byte {
	if len(p) > 0 && p[0] == opMemoize {
		return p[1:]
	}
	return p
}

// shortStr returns the bytes of the SHORT_BINUNICODE p starts with (not
// checked as UTF-8) and what follows it, a MEMOIZE skipped.
func shortStr(p []byte) (b, rest []byte, ok bool) {
	if len(p) < 2 || p[0] != opShortBinUni || len(p) < 2+int(p[1]) {
		return nil, p, false
	}
	b = p[2 : 2+int(p[1])]
	return b, memoized(p[2+len(b):]), true
}

// requestStr reads a SHORT_BINUNICODE into *s, keeping *s if it is the
// same text.
func requestStr(p []byte, s *string) ([]byte, bool) {
	b, rest, ok := shortStr(p)
	if !ok {
		return p, false
	}
	if string(b) != *s {
		if !pyUTF8(unsafe.String(unsafe.SliceData(b), len(b))) {
			return p, false
		}
		*s = string(b)
	}
	return rest, true
}

// requestScalar reads one argument of a Request into *v.
func requestScalar(p []byte, v *any) ([]byte, bool) {
	switch op := p[0]; {
	case op == opNone:
		*v, p = nil, p[1:]
	case op == opNewTrue || op == opNewFalse:
		*v, p = op == opNewTrue, p[1:]
	case op == opBinInt1 && len(p) >= 2:
		*v, p = int64(p[1]), p[2:]
	case op == opBinInt2 && len(p) >= 3:
		*v, p = int64(binary.LittleEndian.Uint16(p[1:3])), p[3:]
	case op == opBinInt && len(p) >= 5:
		*v, p = int64(int32(binary.LittleEndian.Uint32(p[1:5]))), p[5:]
	case op == opBinFloat && len(p) >= 9:
		*v, p = math.Float64frombits(binary.BigEndian.Uint64(p[1:9])), p[9:]
	case op == opShortBinUni:
		var s string
		var ok bool
		if p, ok = requestStr(p, &s); !ok {
			return p, false
		}
		*v = s
		return p, true
	default:
		return p, false
	}
	return memoized(p), true
}

// AppendEncodePair appends to b the pickle of the tuple (tag, v), as
// Encode writes it, without making the tuple: the shape of a manager's
// replies ("#RETURN", value). Common values (nil, bool, int64, string)
// are written without reflection; others, floats among them, through
// Encode's.
func AppendEncodePair(b []byte, tag string, v any, opts Options) ([]byte, error) {
	if !pyUTF8(tag) {
		return b, &EncodeError{Type: "string", Msg: "string is not UTF-8 (send it as ogórek.Bytes)"}
	}
	out := appendSized(append(b, opProto, highestProtocol), tag, opShortBinUni, opBinUnicode, opBinUnicode8)
	switch x := v.(type) {
	case nil:
		out = append(out, opNone)
	case bool:
		if x {
			out = append(out, opNewTrue)
		} else {
			out = append(out, opNewFalse)
		}
	case int64:
		out = appendInt(out, x)
	case string:
		if !pyUTF8(x) {
			return appendEncodeSlow(b, out, v, opts) // its error
		}
		out = appendSized(out, x, opShortBinUni, opBinUnicode, opBinUnicode8)
	default:
		return appendEncodeSlow(b, out, v, opts)
	}
	return append(out, opTuple2, opStop), nil
}

// appendEncodeSlow ends AppendEncodePair for a value of another kind,
// through reflection: out is b with the pair's start.
func appendEncodeSlow(b, out []byte, v any, opts Options) ([]byte, error) {
	e := &encoder{buf: out, opts: &opts}
	if err := e.value(reflect.ValueOf(v), 1); err != nil {
		return b, err
	}
	return append(e.buf, opTuple2, opStop), nil
}

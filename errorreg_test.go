//go:build linux

package mp

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/codec"
)

// wireError is registered for TestRemoteErrorHostileValues; C makes it a
// type that could hold a handle.
type wireError struct {
	N int
	C *Conn
}

func (e *wireError) Error() string { return "wire error" }

var errWire = errors.New("wire sentinel")

func init() {
	RegisterErrorType[*wireError]()
	RegisterError("mp.test.errWire", errWire)
}

// TestRemoteErrorHostileValues decodes hand-made RemoteErrors, as a
// hostile or broken child could send them, through the pool's result
// path and the Process's: a typed value that does not decode as its
// type, an unknown name, a sentinel's name given as a type or the other
// way round, a name repeated many times. None panics; the value is left
// out while the rest still unwraps; each name unwraps at most once.
func TestRemoteErrorHostileValues(t *testing.T) {
	const wireName = "*github.com/go-mp/mp.wireError"
	good, err := codec.Marshal(&wireError{N: 5})
	if err != nil {
		t.Fatal(err)
	}
	withHandle, err := codec.Marshal(map[string]any{"C": rawTag(codec.HandleTag, []any{codec.HandleConn, 0, 0})})
	if err != nil {
		t.Fatal(err)
	}
	deep := append(bytes.Repeat([]byte{0x81}, 200), 0x01)
	bad := map[string][]byte{
		"empty":       {},
		"not CBOR":    {0xff, 0xfe},
		"wrong type":  {0x61, 'x'},
		"null":        {0xf6},
		"trailing":    append(append([]byte{}, good...), 0x01),
		"truncated":   good[:len(good)-1],
		"handle":      withHandle,
		"too deep":    deep,
		"field wrong": mustMarshal(t, map[string]any{"N": "five"}),
	}
	for name, fields := range bad {
		names := []string{"mp.test.errWire", "no.such.error", wireName}
		for range 1000 {
			names = append(names, "mp.test.errWire")
		}
		sent := &RemoteError{Message: "m", Sentinels: names,
			Values: []ErrorValue{{Type: wireName, Fields: fields}, {Type: "mp.test.errWire", Fields: good}, {Type: "no.such.type", Fields: good}}}
		for how, got := range map[string]*RemoteError{"pool": viaPool(t, sent), "process": viaProcess(t, sent)} {
			var w *wireError
			if errors.As(got, &w) {
				t.Errorf("%s %s: rebuilt %+v", how, name, w)
			}
			if u := got.Unwrap(); len(u) != 1 || !errors.Is(got, errWire) {
				t.Errorf("%s %s: unwraps to %v, want errWire alone", how, name, u)
			}
			if !strings.Contains(got.Error(), ": m") {
				t.Errorf("%s %s: %v", how, name, got)
			}
		}
	}
	// The same path rebuilds a good value.
	got := viaPool(t, &RemoteError{Values: []ErrorValue{{Type: wireName, Fields: good}, {Type: wireName, Fields: good}}})
	var w *wireError
	if !errors.As(got, &w) || w.N != 5 || len(got.Unwrap()) != 1 {
		t.Errorf("a good value: %v, %+v, %v", errors.As(got, &w), w, got.Unwrap())
	}
}

// viaPool sends e the way a pool worker does, and returns what the pool
// decodes.
func viaPool(t *testing.T, e *RemoteError) *RemoteError {
	t.Helper()
	b, err := (&taskResult{ID: 1, Err: e}).appendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	var r taskResult
	if err := r.parse(b); err != nil || r.Err == nil {
		t.Fatalf("parse: %v, %+v", err, r)
	}
	return r.Err
}

// viaProcess encodes e the way a child reports it, and returns what the
// Process decodes.
func viaProcess(t *testing.T, e *RemoteError) *RemoteError {
	t.Helper()
	b, fds, err := codec.EncodeMessage(&resultMsg{Err: e})
	if err != nil || len(fds) != 0 {
		t.Fatal(err, fds)
	}
	var r resultMsg
	if _, err := codec.DecodeMessage(b, nil, &r); err != nil || r.Err == nil {
		t.Fatalf("unmarshal: %v, %+v", err, r)
	}
	return r.Err
}

func rawTag(n uint64, content any) any { return cbor.Tag{Number: n, Content: content} }

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := codec.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTypedErrorWithHandleStays checks that a typed error holding a
// handle is left out in the child (a handle travels only as an argument
// or a result) and leaves no descriptor behind.
func TestTypedErrorWithHandleStays(t *testing.T) {
	a, b, err := Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	e := newRemoteError(&wireError{N: 1, C: a}, "m", "", false)
	if len(e.Values) != 0 {
		t.Errorf("values %+v", e.Values)
	}
	if e := newRemoteError(&wireError{N: 1}, "m", "", false); len(e.Values) != 1 {
		t.Errorf("without the handle: values %+v", e.Values)
	}
}

// FuzzRemoteErrorValues unwraps RemoteErrors whose names and encoded
// values are arbitrary: nothing panics, and what is rebuilt can print
// itself.
func FuzzRemoteErrorValues(f *testing.F) {
	good, _ := codec.Marshal(&wireError{N: 5})
	f.Add("mp.ErrEmpty", good)
	f.Add("*github.com/go-mp/mp.wireError", []byte{0xf6})
	f.Add("*github.com/go-mp/mp.OwnerDiedError", []byte{0xa1, 0x63, 'P', 'i', 'd', 0x01})
	f.Fuzz(func(t *testing.T, name string, fields []byte) {
		e := &RemoteError{Sentinels: []string{name, name}, Values: []ErrorValue{
			{Type: "*github.com/go-mp/mp.wireError", Fields: fields},
			{Type: "*github.com/go-mp/mp.OwnerDiedError", Fields: fields},
			{Type: "*github.com/go-mp/mp.ExitError", Fields: fields},
			{Type: name, Fields: fields},
		}}
		for _, u := range e.Unwrap() {
			_ = u.Error()
		}
	})
}

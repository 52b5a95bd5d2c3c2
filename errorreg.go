//go:build linux

package mp

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/go-mp/mp/internal/codec"
)

// Errors that cross processes. A target's error is only text once it has
// left its process; what lets errors.Is and errors.As see through the
// boundary is this registry, which the parent and its children (the same
// binary) fill alike at init. The child looks up, in the error its target
// returned, every registered sentinel it matches and every registered
// type it holds, and sends their names (and a typed error's fields) with
// the *RemoteError; the parent's RemoteError.Unwrap turns the names back
// into its own variables and values.

// RegisterError registers err, a sentinel error (a variable compared with
// errors.Is, such as io.EOF), under name, so that its identity crosses
// processes: when the error a target returns in a child (or panics with)
// matches err, the *RemoteError the parent receives unwraps to err itself,
// and errors.Is(remoteErr, err) holds in the parent as it did in the child,
// however deeply err was wrapped (fmt.Errorf with one or several %w,
// errors.Join). This holds for Process.Join, a pool's tasks, an
// Executor's futures, and the methods of a manager's registered types.
//
// The name identifies err between processes, since a variable's own name
// cannot be read at run time: use one that is unique in the binary, such
// as the import path and the variable, "example.com/store.ErrNotFound".
// mp registers its own sentinels and these, under names beginning "mp.",
// "context.", "io.", "fs." and "os.": context.Canceled,
// context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF, the fs sentinels
// (fs.ErrNotExist is os.ErrNotExist, and so on) and os.ErrDeadlineExceeded;
// and the error types *OwnerDiedError and *ExitError (see
// RegisterErrorType).
//
// Register at package level, in a var declaration or an init function, as
// targets are: a child re-executes the binary and never returns from
// Main, so what main registers after Main is unknown to children.
// Registering later is allowed but only works where both processes did it.
// A name the receiving process does not know is ignored there: the error
// arrives with its message and stack and matches nothing more.
//
// Mistakes are programming errors and panic, as Register's do: an empty
// name, a nil err, an err whose dynamic type is not comparable (errors.Is
// could not match it), a name registered twice (as an error or an error
// type), or the same err under two names.
func RegisterError(name string, err error) {
	if name == "" || err == nil {
		panic(fmt.Sprintf("mp: RegisterError(%q, %v): an empty name or a nil error", name, err))
	}
	if !reflect.TypeOf(err).Comparable() {
		panic(fmt.Sprintf("mp: RegisterError %s: a %T is not comparable, so errors.Is cannot match it", name, err))
	}
	addError(&errorEntry{name: name, sentinel: err})
}

// RegisterErrorType registers the error type T so that its values cross
// processes: when the error a target returns in a child (or panics with)
// holds a T (errors.As finds one, however deeply wrapped), the
// *RemoteError the parent receives unwraps to a T rebuilt from it, and
// errors.As(remoteErr, &t) fills t in the parent as it did in the child.
//
// T may be a pointer type (*QuotaError, the usual form when Error has a
// pointer receiver) or a value type (QuotaError); errors.As tells them
// apart, so register the form the code returns and asks errors.As for:
// the child looks for exactly T, and the parent rebuilds a T. Both may be
// registered.
//
// The exported fields of T travel, encoded with mp's codec like a target's
// arguments; unexported fields arrive as zero values. Fields of an
// interface type (an error that T wraps, say) arrive nil: what they held
// still matches, through the registered sentinels and types that the
// child finds anywhere in its error. Only the first T in the error (the
// one errors.As finds) travels. A T that cannot be encoded (it holds a
// channel or a Conn), or whose fields do not decode in the parent (they
// come from another process, and are checked like any input), is left
// out: the RemoteError keeps its message, its stack and whatever else it
// matched.
//
// T is known between processes by its package path and name
// ("*example.com/store.QuotaError"). Register it at package level, as
// RegisterError says. Mistakes panic: T an interface type (values of
// which cannot be rebuilt) or a type without a name, and T registered
// twice.
func RegisterErrorType[T error]() {
	t := reflect.TypeFor[T]()
	base := t
	if base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	if t.Kind() == reflect.Interface || base.Name() == "" {
		panic(fmt.Sprintf("mp: RegisterErrorType[%v]: an interface or unnamed type cannot be rebuilt in another process", t))
	}
	name := base.PkgPath() + "." + base.Name()
	if t != base {
		name = "*" + name
	}
	addError(&errorEntry{name: name,
		find: func(err error) ([]byte, bool) {
			var v T
			if !errors.As(err, &v) {
				return nil, false
			}
			return encodeErrorValue(reflect.ValueOf(&v).Elem())
		},
		decode: func(b []byte) (error, bool) {
			var v T
			// No descriptors come with it: a handle in it fails to decode.
			if _, err := codec.DecodeMessage(b, nil, &v); err != nil {
				return nil, false
			}
			if rv := reflect.ValueOf(&v).Elem(); rv.Kind() == reflect.Pointer && rv.IsNil() {
				return nil, false // an error nobody could call Error on
			}
			return v, true
		}})
}

// ErrorValue is a registered typed error (see RegisterErrorType) as it
// travels inside a RemoteError.
type ErrorValue struct {
	Type   string // the name of the type: its package path and name
	Fields []byte // the value encoded with mp's codec
}

// An errorEntry is a registered sentinel (sentinel set) or error type
// (find and decode set).
type errorEntry struct {
	name     string
	sentinel error
	// find encodes the first value of the type in err's tree.
	find func(err error) ([]byte, bool)
	// decode rebuilds a value from what find encoded in another process.
	decode func([]byte) (error, bool)
}

// errorRegistry holds the registered errors; sentinels and types are kept
// in the order of registration, the order RemoteError.Unwrap reports.
var errorRegistry = struct {
	sync.RWMutex
	sentinels []*errorEntry
	types     []*errorEntry
	byName    map[string]*errorEntry
}{byName: map[string]*errorEntry{}}

func addError(e *errorEntry) {
	errorRegistry.Lock()
	defer errorRegistry.Unlock()
	if _, dup := errorRegistry.byName[e.name]; dup {
		panic("mp: error " + e.name + " registered twice")
	}
	if e.sentinel == nil {
		errorRegistry.types = append(errorRegistry.types, e)
	} else {
		for _, s := range errorRegistry.sentinels {
			if s.sentinel == e.sentinel {
				panic("mp: error " + e.name + " is already registered as " + s.name)
			}
		}
		errorRegistry.sentinels = append(errorRegistry.sentinels, e)
	}
	errorRegistry.byName[e.name] = e
}

// NewRemoteError returns the *RemoteError that reports err, returned by
// code running in this process, to another process, as mp reports a
// target's error: Message is err's text, Sentinels and Values hold what
// of err crosses processes (see RegisterError and RegisterErrorType), and
// Process and Pid name this process; Stack is left empty. Sent with mp's
// codec (Conn.Send, say), it lets errors.Is and errors.As in the receiver
// see err's registered errors. The manager package reports a method's
// error with it. NewRemoteError(nil) is nil.
func NewRemoteError(err error) *RemoteError {
	if err == nil {
		return nil
	}
	e := newRemoteError(err, err.Error(), "", false)
	me := CurrentProcess()
	e.Process, e.Pid = me.Name, me.Pid
	return e
}

// newRemoteError makes the *RemoteError that reports err, with what of it
// crosses processes: the registered sentinels it matches, the registered
// typed errors it holds.
func newRemoteError(err error, msg, stack string, panicked bool) *RemoteError {
	e := &RemoteError{Message: msg, Stack: stack, Panic: panicked}
	if err == nil {
		return e
	}
	// errors.Is and errors.As call the error's own methods: not under the
	// lock, which they might want (through a RemoteError's Unwrap).
	sentinels, types := registeredErrors()
	for _, s := range sentinels {
		if errors.Is(err, s.sentinel) {
			e.Sentinels = append(e.Sentinels, s.name)
		}
	}
	for _, t := range types {
		if b, ok := t.find(err); ok {
			e.Values = append(e.Values, ErrorValue{Type: t.name, Fields: b})
		}
	}
	return e
}

// registeredErrors returns the registered sentinels and types. The lists
// are only appended to, so what they hold now stays as it is.
func registeredErrors() (sentinels, types []*errorEntry) {
	errorRegistry.RLock()
	defer errorRegistry.RUnlock()
	return errorRegistry.sentinels, errorRegistry.types
}

// encodeErrorValue encodes v, a value of a registered error type, with its
// interface fields cleared: the codec could not rebuild them.
func encodeErrorValue(v reflect.Value) ([]byte, bool) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, false
		}
		v = v.Elem()
	}
	c := reflect.New(v.Type())
	c.Elem().Set(v)
	if s := c.Elem(); s.Kind() == reflect.Struct {
		for i := range s.NumField() {
			if f := s.Field(i); f.Kind() == reflect.Interface && f.CanSet() && f.Type().NumMethod() > 0 {
				f.SetZero()
			}
		}
	}
	b, fds, err := codec.EncodeMessage(c.Interface())
	if len(fds) > 0 {
		// A handle (a Conn...) travels only as an argument or a result.
		codec.CloseFDs(fds)
		return nil, false
	}
	return b, err == nil
}

// remoteUnwrap returns the errors a RemoteError carries, as this process
// knows them: each registered name once, unknown names and values that
// do not decode left out (they are input from another process).
func remoteUnwrap(names []string, values []ErrorValue) []error {
	if len(names) == 0 && len(values) == 0 {
		return nil
	}
	var errs []error
	seen := map[*errorEntry]bool{}
	for _, n := range names {
		if s := registeredError(n); s != nil && s.sentinel != nil && !seen[s] {
			seen[s] = true
			errs = append(errs, s.sentinel)
		}
	}
	for _, v := range values {
		t := registeredError(v.Type)
		if t == nil || t.decode == nil || seen[t] {
			continue
		}
		seen[t] = true
		if err, ok := t.decode(v.Fields); ok {
			errs = append(errs, err)
		}
	}
	return errs
}

// registeredError returns the entry registered as name, or nil.
func registeredError(name string) *errorEntry {
	errorRegistry.RLock()
	defer errorRegistry.RUnlock()
	return errorRegistry.byName[name]
}

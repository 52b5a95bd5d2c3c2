//go:build linux

package manager

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"sync"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
)

// Type is a type registered with RegisterType: a server can make
// instances of it and clients call their methods through a Proxy, as with
// Python's BaseManager.register(typeid, callable).
type Type[T, A any] struct {
	name string
}

// typeInfo is what the server knows of a registered type.
type typeInfo struct {
	name    string
	ptr     reflect.Type // *T
	newFn   func(arg []byte) (any, error)
	methods map[string]*methodInfo
}

type methodInfo struct {
	name   string
	fn     reflect.Value // the method expression: func(*T, args...) results
	ctx    bool          // the first argument is a context.Context
	in     []reflect.Type
	out    []reflect.Type
	errOut bool // the last result is an error
}

var types struct {
	sync.RWMutex
	byName map[string]*typeInfo
	byPtr  map[reflect.Type]*typeInfo
}

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()
)

// RegisterType registers the type T under name, with newFn to make its
// instances from an argument of type A, and returns the handle that makes
// them on a manager (Type.New). Register it in a package-level variable,
// so that the manager's process (the same binary, re-executed by Start)
// registers it too:
//
//	var counters = manager.RegisterType("counter", newCounter)
//
// Clients call the exported methods of *T named in methods — all of them
// when none is named — through a Proxy[T] (Proxy.Call, Call). A method's
// arguments and results travel encoded with CBOR; a last result of type
// error is returned as the call's error (an *mp.RemoteError, which
// unwraps to the errors registered with mp.RegisterError and
// mp.RegisterErrorType that the method's error held), as is a panic. A method whose first parameter is a context.Context gets one that
// is cancelled when the caller's ctx ends (or its process does); it runs
// in a goroutine of its own. A result that is a *U of a registered type U
// is served as an object of the manager, and the client receives a proxy
// of it (decode it into a *Proxy[U]); an argument of type *U can be given
// as a proxy of such an object, and the method receives the object itself.
//
// Methods are called from the goroutines that serve the clients, several
// at once, as Python's manager calls them from its threads: a type shared
// by several clients must be safe for concurrent use.
//
// Only registered types and their exposed methods can be invoked: nothing
// received from a connection names any other code.
//
// Registration mistakes are programming errors and panic, as mp.Register's
// do: registering a name twice, a name of the SyncManager types, a nil
// newFn, a method that does not exist or cannot travel (it takes or
// returns a channel or a function), or one Go type under two names — a
// type has one name, under which the server serves the *T its methods
// return, and by which a *T argument finds its object.
func RegisterType[T, A any](name string, newFn func(A) (*T, error), methods ...string) *Type[T, A] {
	if name == "" || builtinKinds[name] {
		panic(fmt.Sprintf("manager: RegisterType: bad or reserved name %q", name))
	}
	if newFn == nil {
		panic("manager: RegisterType " + name + " with a nil function")
	}
	ptr := reflect.TypeFor[*T]()
	ti := &typeInfo{name: name, ptr: ptr, methods: map[string]*methodInfo{}}
	ti.newFn = func(arg []byte) (any, error) {
		var a A
		if err := codec.Unmarshal(arg, &a); err != nil {
			return nil, fmt.Errorf("manager: decode the argument of %s: %w", name, err)
		}
		return newFn(a)
	}
	if len(methods) == 0 {
		for i := range ptr.NumMethod() {
			m := ptr.Method(i)
			if m.Name == "MarshalCBOR" || m.Name == "UnmarshalCBOR" {
				continue
			}
			if mi, err := inspect(m); err == nil {
				ti.methods[m.Name] = mi
			}
		}
	}
	for _, n := range methods {
		m, ok := ptr.MethodByName(n)
		if !ok {
			panic(fmt.Sprintf("manager: RegisterType %s: %v has no exported method %s", name, ptr, n))
		}
		mi, err := inspect(m)
		if err != nil {
			panic(fmt.Sprintf("manager: RegisterType %s: %v", name, err))
		}
		ti.methods[n] = mi
	}
	types.Lock()
	defer types.Unlock()
	if types.byName == nil {
		types.byName = map[string]*typeInfo{}
		types.byPtr = map[reflect.Type]*typeInfo{}
	}
	if _, dup := types.byName[name]; dup {
		panic("manager: type " + name + " registered twice")
	}
	if prev, dup := types.byPtr[ptr]; dup {
		panic(fmt.Sprintf("manager: RegisterType %s: %v is already registered as %q (a type has one name)", name, ptr, prev.name))
	}
	types.byName[name] = ti
	types.byPtr[ptr] = ti
	return &Type[T, A]{name: name}
}

// inspect checks that a method can be called through a proxy.
func inspect(m reflect.Method) (*methodInfo, error) {
	ft := m.Type
	mi := &methodInfo{name: m.Name, fn: m.Func}
	for i := 1; i < ft.NumIn(); i++ {
		t := ft.In(i)
		if i == 1 && t == ctxType {
			mi.ctx = true
			continue
		}
		if ft.IsVariadic() && i == ft.NumIn()-1 || !travels(t) {
			return nil, fmt.Errorf("method %s: parameter %d (%v) cannot travel", m.Name, i, t)
		}
		mi.in = append(mi.in, t)
	}
	for i := range ft.NumOut() {
		t := ft.Out(i)
		if i == ft.NumOut()-1 && t == errType {
			mi.errOut = true
			continue
		}
		if !travels(t) {
			return nil, fmt.Errorf("method %s: result %d (%v) cannot travel", m.Name, i, t)
		}
		mi.out = append(mi.out, t)
	}
	return mi, nil
}

func travels(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return false
	}
	return t != ctxType
}

func lookupType(name string) *typeInfo {
	types.RLock()
	defer types.RUnlock()
	return types.byName[name]
}

func lookupPtrType(t reflect.Type) *typeInfo {
	types.RLock()
	defer types.RUnlock()
	return types.byPtr[t]
}

// Name returns the name the type was registered under.
func (t *Type[T, A]) Name() string { return t.name }

// New makes an instance of the type on m's server, with newFn(arg) as
// registered, and returns its proxy. With Named, it returns the instance
// already made under that name, if any.
func (t *Type[T, A]) New(ctx context.Context, m *Manager, arg A, opts ...Option) (*Proxy[T], error) {
	return newProxy(ctx, m, t.name, opts, func(p *Proxy[T]) *ref { return &p.r }, arg)
}

// Proxy is a proxy of an instance of a registered type T held by a
// manager. Call its methods with Call (or the generic function Call).
// A Proxy[any] stands for an instance of any registered type.
type Proxy[T any] struct{ r ref }

// Call calls method with args on the instance, and decodes its results
// (but a last error) into results, pointers, in order; results may be
// fewer than the method's. The method's error, or panic, is returned as an
// *mp.RemoteError.
func (p *Proxy[T]) Call(ctx context.Context, method string, args []any, results ...any) error {
	all := make([]any, 0, 1+len(args))
	all = append(append(all, method), args...)
	cc, err := p.r.call(ctx, opCall, all...)
	if err != nil {
		return err
	}
	defer p.r.done(cc)
	if len(results) > len(cc.items)-1 {
		return fmt.Errorf("manager: %s returned %d results, not %d", method, len(cc.items)-1, len(results))
	}
	for i, res := range results {
		if err := cc.decode(1+i, res); err != nil {
			return err
		}
	}
	return nil
}

// Call calls method with args on the instance p refers to and returns its
// first result (but an error) as an R.
func Call[R, T any](ctx context.Context, p *Proxy[T], method string, args ...any) (R, error) {
	var r R
	all := make([]any, 0, 1+len(args))
	all = append(append(all, method), args...)
	cc, err := p.r.call(ctx, opCall, all...)
	if err != nil {
		return r, err
	}
	defer p.r.done(cc)
	if len(cc.items) > 1 {
		err = cc.decode(1, &r)
	}
	return r, err
}

// Forget drops this process's reference to the instance.
func (p *Proxy[T]) Forget(ctx context.Context) error { return p.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (p *Proxy[T]) MarshalCBOR() ([]byte, error) { return p.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use. When T is a
// registered type, the object must be of that type.
func (p *Proxy[T]) UnmarshalCBOR(b []byte) error {
	if err := p.r.unmarshal(b); err != nil {
		return err
	}
	if p.r.tok.Address == "" {
		return nil
	}
	if builtinKinds[p.r.tok.Kind] {
		return fmt.Errorf("%w: a %s proxy arrived where a registered type was expected", ErrWrongKind, p.r.tok.Kind)
	}
	if ti := lookupPtrType(reflect.TypeFor[*T]()); ti != nil && ti.name != p.r.tok.Kind {
		return fmt.Errorf("%w: a %s proxy arrived where a %s was expected", ErrWrongKind, p.r.tok.Kind, ti.name)
	}
	return nil
}

// ---- on the server ----

// customObj is an instance of a registered type.
type customObj struct {
	ti *typeInfo
	v  reflect.Value // a *T
}

func (c *customObj) key() any { return c.v.Interface() }

func (c *customObj) free() ([][]byte, []uint64) { return nil, nil }

// create makes an instance from its encoded argument.
func (ti *typeInfo) create(x *call, arg []byte) (im impl, code uint64, msg string) {
	defer func() {
		if p := recover(); p != nil {
			im, code, msg = nil, codeRemote, fmt.Sprintf("manager: new %s: panic: %v", ti.name, p)
		}
	}()
	v, err := ti.newFn(arg)
	if err != nil {
		return nil, codeRemote, err.Error()
	}
	rv := reflect.ValueOf(v)
	if rv.IsNil() {
		return nil, codeRemote, fmt.Sprintf("manager: new %s returned nil", ti.name)
	}
	return &customObj{ti: ti, v: rv}, 0, ""
}

func (c *customObj) handle(x *call) waitFn {
	r := x.r
	if x.op != opCall {
		x.badOp()
		return nil
	}
	if len(x.args) < 1 {
		r.fail(codeProtocol, "manager: call without a method")
		return nil
	}
	name, err := codec.ReadText(x.args[0])
	if err != nil {
		r.fail(codeProtocol, "manager: bad method name")
		return nil
	}
	m := c.ti.methods[name]
	if m == nil {
		r.fail(codeNoMethod, fmt.Sprintf("manager: type %s has no method %s", c.ti.name, name))
		return nil
	}
	args := x.args[1:]
	if len(args) != len(m.in) {
		r.fail(codeBadArgs, fmt.Sprintf("manager: %s.%s takes %d arguments, not %d", c.ti.name, name, len(m.in), len(args)))
		return nil
	}
	in := make([]reflect.Value, 1, 2+len(args))
	in[0] = c.v
	if m.ctx {
		in = append(in, reflect.Value{}) // the ctx, set below
	}
	for i, a := range args {
		v, err := x.s.decodeArg(m.in[i], a)
		if err != nil {
			r.fail(codeBadArgs, fmt.Sprintf("manager: %s.%s argument %d: %v", c.ti.name, name, i, err))
			return nil
		}
		in = append(in, v)
	}
	s, sc, sess := x.s, x.c, x.sess
	if !m.ctx {
		s.invoke(sc, sess, m, in, r)
		return nil
	}
	return func(p *pending, r *reply) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-p.cancel:
				cancel()
			case <-done:
			}
		}()
		in[1] = reflect.ValueOf(ctx)
		s.invoke(sc, sess, m, in, r)
		close(done)
		wg.Wait()
		cancel()
	}
}

// decodeArg decodes an argument of type t. A *U of a registered type may
// come as a token of one of this server's objects.
func (s *Server) decodeArg(t reflect.Type, a []byte) (reflect.Value, error) {
	if ti := lookupPtrType(t); ti != nil {
		if tok, err := parseToken(a); err == nil {
			if tok.Instance != s.instance {
				return reflect.Value{}, fmt.Errorf("a proxy of another manager")
			}
			o := s.lookup(tok.ID)
			if o == nil {
				return reflect.Value{}, ErrNoObject
			}
			c, ok := o.impl.(*customObj)
			if !ok || c.ti != ti {
				return reflect.Value{}, fmt.Errorf("a proxy of a %s where a %s is expected", o.kind, ti.name)
			}
			return c.v, nil
		}
	}
	v := reflect.New(t)
	if err := codec.Unmarshal(a, v.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return v.Elem(), nil
}

// invoke calls the method and writes its results, or its error, into r.
func (s *Server) invoke(c *sconn, sess *session, m *methodInfo, in []reflect.Value, r *reply) {
	var out []reflect.Value
	panicked := true
	func() {
		defer func() {
			if p := recover(); p != nil {
				err, _ := p.(error)
				failRemote(r, err, fmt.Sprint(p), true, string(debug.Stack()))
			}
		}()
		out = m.fn.Call(in)
		panicked = false
	}()
	if panicked {
		return
	}
	if m.errOut {
		if e := out[len(out)-1]; !e.IsNil() {
			err := e.Interface().(error)
			failRemote(r, err, err.Error(), false, "")
			return
		}
		out = out[:len(out)-1]
	}
	r.ok()
	var buf bytes.Buffer
	for _, v := range out {
		if v.Kind() == reflect.Interface && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			if ti := lookupPtrType(v.Type()); ti != nil {
				tok := token{Network: c.network, Address: c.address, Instance: s.instance,
					ID: s.serveInstance(sess, ti, v, ""), Kind: ti.name}
				r.buf = appendToken(r.buf, &tok)
				r.n++
				continue
			}
		}
		buf.Reset()
		if err := codec.DetMarshalToBuffer(v.Interface(), &buf); err != nil {
			r.fail(codeRemote, fmt.Sprintf("manager: encode the result of %s: %v", m.name, err), false, "")
			return
		}
		r.value(buf.Bytes())
	}
}

// remoteMatch is what of a method's error crosses to the client (see
// mp.NewRemoteError): the registered sentinels it matched and the
// registered typed errors it held. It is input to the client, where
// mp.RemoteError.Unwrap checks it.
type remoteMatch struct {
	_         struct{} `cbor:",toarray"`
	Sentinels []string
	Values    []mp.ErrorValue
}

// cborItem is an item of a reply already encoded.
type cborItem []byte

// failRemote reports err, a method's error or the error it panicked with
// (nil for another panic value), as codeRemote with msg, the panic flag and
// the stack, and, when there is any, what of err crosses processes: the
// registered errors it holds (see mp.RegisterError), which the client's
// *mp.RemoteError unwraps to.
func failRemote(r *reply, err error, msg string, panicked bool, stack string) {
	if re := mp.NewRemoteError(err); re != nil && len(re.Sentinels)+len(re.Values) > 0 {
		if b, encErr := codec.DetMarshal(remoteMatch{Sentinels: re.Sentinels, Values: re.Values}); encErr == nil {
			r.fail(codeRemote, msg, panicked, stack, cborItem(b))
			return
		}
	}
	r.fail(codeRemote, msg, panicked, stack)
}

// serveInstance returns the id of the object holding v, making one if
// there is none, referred to by sess, and named name unless name is "".
// The name's reference is taken under the same lock as sess's: named
// after, the object could be gone already, as another connection of
// sess may release it meanwhile (a nil object then crashed the server).
func (s *Server) serveInstance(sess *session, ti *typeInfo, v reflect.Value, name string) uint64 {
	key := v.Interface()
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[s.ptrs[key]]
	if o != nil {
		if _, ok := sess.refs[o.id]; !ok {
			sess.refs[o.id] = struct{}{}
			o.refs++
		}
	} else {
		o = &object{id: s.newID(), kind: ti.name, impl: &customObj{ti: ti, v: v}, refs: 1}
		s.objects[o.id] = o
		s.ptrs[key] = o.id
		sess.refs[o.id] = struct{}{}
	}
	if name != "" {
		s.names[name] = o.id
		o.refs++
	}
	return o.id
}

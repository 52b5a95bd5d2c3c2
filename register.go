//go:build linux

package mp

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
)

// Func is a target registered under a stable name: a Go function that a
// child process (or, later, a pool worker) can run with an argument of type
// A and a result of type R. Register it in a package-level variable so that
// the parent and the re-executed child agree on it:
//
//	var double = mp.Register("double", func(x int) (int, error) { return 2 * x, nil })
//
// A target takes one argument, so there is no Starmap: where Python's
// starmap spreads a tuple over several parameters, give the target a
// struct with a field for each and Map over a slice of them (see the
// example of Map).
type Func[A, R any] struct {
	name string
	// calls holds *applyCall[R] that ApplyAsync may use again (see
	// applyCall.recycle).
	calls sync.Pool
}

// Name returns the name the target was registered under.
func (f *Func[A, R]) Name() string { return f.name }

// Runner is the "subclass" style of Python's Process: a struct whose
// exported fields travel to the child, where Run is called.
type Runner interface {
	Run() error
}

// ContextRunner is a [Runner] that sees cancellation: when the type
// registered with [RegisterRunner] implements it, the child calls
// RunContext instead of Run, with a ctx cancelled as [RegisterCtx]
// describes.
type ContextRunner interface {
	Runner
	RunContext(ctx context.Context) error
}

// An entry is what the child needs to run a target: read its argument from
// the control connection, then call it.
type entry struct {
	name string
	// seesCtx: registered with RegisterCtx (or a ContextRunner), so that
	// cancelling its ctx may stop it; the others are stopped by a signal.
	seesCtx bool
	start   func(ctrl *Conn) (run func(context.Context) (any, error), err error)
	// local calls the target in this process with a nil or A-typed
	// argument (a nil one is A's zero value).
	local func(arg any) (any, error)
	// task runs the target, with ctx, on an encoded argument (chunk false: an A;
	// chunk true: a chunk of As, one call each, stopping at the first
	// error) and returns the encoded result (an R or a chunk of Rs): a pool
	// worker's job. The result is written into buf and aliases it, or is
	// memory of its own. arg may be kept (a chunk's items may alias it).
	task func(ctx context.Context, arg []byte, chunk bool, buf *bytes.Buffer) ([]byte, error)
	// types names the argument and result types, for the fingerprint of
	// the registered targets that a cluster compares (see cluster.go).
	types string
	// chunkForms says how chunks of its arguments and results travel,
	// for a cluster that cuts chunks (see cluster.go).
	chunkForms func() (arg, res clusterhook.ChunkForm)
}

var (
	regMu   sync.RWMutex
	targets = map[string]*entry{}
	runners = map[reflect.Type]string{}
)

// Register registers fn under name and returns the typed handle used to
// start it. Names must be unique in the binary; registering a name twice is
// a programming error and panics (like flag and http.Handle), so do it at
// package level.
//
// fn does not see cancellation: [Process.Terminate] ends its child at
// once (exit code -15), and a pool cancels it by killing its worker. Use
// [RegisterCtx] for a target that can stop cleanly.
func Register[A, R any](name string, fn func(A) (R, error)) *Func[A, R] {
	if fn == nil {
		panic("mp: Register " + name + " with a nil function")
	}
	return register(name, fn, nil)
}

// RegisterCtx registers fn under name, as [Register] does, for a target
// that sees cancellation: the ctx it is called with is cancelled when
//
//   - [Process.Terminate] is called: SIGTERM becomes cancellation. If fn
//     returns within the Process's CancelGrace, the child reports its
//     result and exits as it would have anyway (code 0, or 1 after an
//     error); otherwise, or if the child is still there at the end of the
//     grace (waiting for children of its own, say), it is ended by SIGTERM
//     then (exit code -15, as for a target registered with Register);
//   - the parent process ends, however it ends, for a daemon child (the
//     child exits CancelGrace later if fn has not returned) and for a
//     pool worker (see [PoolOptions].CancelGrace);
//   - in a pool, the ctx of the call that gave the task is done, or the
//     task's [PoolOptions.TaskTimeout] passes: see [Pool] for what
//     follows.
//
// Only cancellation crosses: the ctx carries no deadline or values of the
// caller's.
func RegisterCtx[A, R any](name string, fn func(ctx context.Context, a A) (R, error)) *Func[A, R] {
	if fn == nil {
		panic("mp: RegisterCtx " + name + " with a nil function")
	}
	return register(name, nil, fn)
}

// register is the one home of Register and RegisterCtx: exactly one of
// plain and withCtx is set, and a target registered withCtx is stopped by
// cancelling its ctx first. A plain one is called as it is, without a
// wrapper: a chunk's items cost a few nanoseconds each.
func register[A, R any](name string, plain func(A) (R, error), withCtx func(context.Context, A) (R, error)) *Func[A, R] {
	bind := func(ctx context.Context) func(A) (R, error) {
		if plain != nil {
			return plain
		}
		return func(a A) (R, error) { return withCtx(ctx, a) }
	}
	add(&entry{name: name, seesCtx: withCtx != nil, types: typesOf[A, R](), chunkForms: chunkFormsOf[A, R], start: func(ctrl *Conn) (func(context.Context) (any, error), error) {
		var a A
		if err := ctrl.Recv(&a); err != nil {
			return nil, fmt.Errorf("mp: receive arguments of %s: %w", name, err)
		}
		return func(ctx context.Context) (any, error) { return bind(ctx)(a) }, nil
	}, local: func(arg any) (any, error) {
		var a A
		if arg != nil {
			v, ok := arg.(A)
			if !ok {
				return nil, fmt.Errorf("mp: target %s takes %T, not %T", name, a, arg)
			}
			a = v
		}
		return bind(context.Background())(a)
	}, task: func(ctx context.Context, arg []byte, chunk bool, buf *bytes.Buffer) ([]byte, error) {
		fn := bind(ctx)
		if !chunk {
			var a A
			if err := codec.DecodeOne(arg, &a); err != nil {
				return nil, fmt.Errorf("mp: decode the argument of %s: %w", name, err)
			}
			r, err := fn(a)
			if err != nil {
				return nil, err
			}
			return codec.OneBytes(buf, r)
		}
		as, err := codec.DecodeChunkAny[A](arg)
		if err != nil {
			return nil, fmt.Errorf("mp: decode the arguments of %s: %w", name, err)
		}
		rs := codec.ResultsInPlace[A, R](as)
		for i, a := range as {
			r, err := fn(a)
			if err != nil {
				return nil, err
			}
			rs[i] = r
		}
		return codec.ChunkBytes(buf, rs)
	}})
	return &Func[A, R]{name: name}
}

// RegisterProc registers a target that has no result, the usual shape of
// a Process target.
func RegisterProc[A any](name string, fn func(A) error) *Func[A, struct{}] {
	if fn == nil {
		panic("mp: RegisterProc " + name + " with a nil function")
	}
	return Register(name, func(a A) (struct{}, error) { return struct{}{}, fn(a) })
}

// RegisterProcCtx is [RegisterProc] for a target that sees cancellation,
// as [RegisterCtx] describes.
func RegisterProcCtx[A any](name string, fn func(ctx context.Context, a A) error) *Func[A, struct{}] {
	if fn == nil {
		panic("mp: RegisterProcCtx " + name + " with a nil function")
	}
	return RegisterCtx(name, func(ctx context.Context, a A) (struct{}, error) { return struct{}{}, fn(ctx, a) })
}

// RegisterRunner registers the struct type T, whose pointer implements
// Runner, under name. [NewRunnerProcess] then starts a child that receives
// a copy of the struct's exported fields and calls its Run method, or its
// RunContext method if it implements [ContextRunner].
func RegisterRunner[T any, P interface {
	*T
	Runner
}](name string) *Func[P, struct{}] {
	var f *Func[P, struct{}]
	if _, ok := any(P(nil)).(ContextRunner); ok {
		f = register(name, nil, func(ctx context.Context, p P) (struct{}, error) {
			if p == nil {
				p = new(T)
			}
			return struct{}{}, any(p).(ContextRunner).RunContext(ctx)
		})
	} else {
		f = register(name, func(p P) (struct{}, error) {
			if p == nil {
				p = new(T)
			}
			return struct{}{}, p.Run()
		}, nil)
	}
	regMu.Lock()
	runners[reflect.TypeFor[P]()] = name
	regMu.Unlock()
	return f
}

func add(e *entry) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := targets[e.name]; dup {
		panic("mp: target " + e.name + " registered twice")
	}
	targets[e.name] = e
}

func lookup(name string) (*entry, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	e, ok := targets[name]
	return e, ok
}

// callLocal runs the target registered as name in this process (a
// Barrier's action, say), turning a panic into a *RemoteError so that the
// caller survives it.
func callLocal(name string, arg any) (res any, err error) {
	e, ok := lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q in this binary", ErrUnknownTarget, name)
	}
	r, rerr := call(func() (any, error) { return e.local(arg) })
	if rerr != nil {
		me := CurrentProcess()
		rerr.Process, rerr.Pid = me.Name, me.Pid
		return nil, rerr
	}
	return r, nil
}

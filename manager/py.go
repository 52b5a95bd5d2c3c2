//go:build linux

package manager

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mplog"
	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
	"golang.org/x/sys/unix"
)

// CPython's manager protocol, served next to mp's own (Server.Python).
//
// A CPython client (multiprocessing.managers.BaseManager and its proxies,
// 3.11 to 3.13) connects with the same framing and authkey handshake as
// a Go client, then sends pickles where a Go client sends CBOR: the first
// message tells them apart (a pickle starts with PROTO, 0x80 and a
// protocol of 2 to 5; a Go client's hello is a CBOR array of 7 items,
// 0x87). Each request is a pickled tuple (id, name, args, kwds), and each
// reply a pickled pair (kind, value): ("#RETURN", result), ("#ERROR",
// exception), ("#TRACEBACK", text) or ("#PROXY", (exposed, token)).
//
// A connection's first request is one of the server's public functions:
// "accept_connection" makes it the connection of one proxy thread, which
// then sends method calls (id, method, args, kwds); the others
// ("create", "incref", "decref", "dummy", "get_methods",
// "number_of_objects", "debug_info", "shutdown") are answered and the
// connection closed, as CPython's server does; shutdown is always
// refused (see pyPublic).
//
// Nothing a client sends is run: a request names a typeid or a method,
// which the server looks up in its own tables (SyncManager's typeids and
// their proxies' methods); anything else is answered with an exception.
// Pickles may name only multiprocessing.managers.Token (the argument of
// get_methods), builtins.slice (list and array indices), builtins.range
// (m.list(range(10)), expanded by the server), and RebuildProxy
// with the proxy types of multiprocessing.managers (a proxy stored in a
// value: see appendProxy), none of which is run: one naming any other
// class is refused, and answered with a "#TRACEBACK" (a RemoteError in
// the client). Replies name only builtins exceptions, queue.Empty,
// queue.Full, threading.BrokenBarrierError, Token, builtins.dict (which
// makes dicts in their order, see pyDict) and RebuildProxy with the proxy
// types (a stored proxy read back).
//
// References: CPython's proxies count them with incref and decref
// requests, not per process, so the server does the same for Python
// clients (object.pyrefs, part of object.refs): an object made by or
// handed to Python lives while Python holds references to it (and while
// Go clients or a name do). A decref never drops more than Python's
// references, so a Python client cannot free what Go clients use. As
// with CPython's server, the references of a Python process that dies
// without its finalizers running are never dropped: what it made lives
// until the server ends.
//
// What a proxy thread holds is its connection's: its connection is a
// session of its own (see session), so when a Python process dies
// holding a Lock, an RLock or units of a BoundedSemaphore, the end of its
// connection gives them back (the next acquirer gets the lock, as a Go
// client's would), and its waits end. A Lock may be released by another
// thread or process, as in Python; an RLock only by the thread that holds
// it. An item a queue's get hands to a Python client is the client's once
// its reply is sent (Python does not acknowledge): if the client dies
// before it unpickles the reply, the item is lost, as with CPython's
// server; an item whose reply cannot be sent goes back to the queue.

// isPickle reports whether a connection's first message is a pickle.
func isPickle(msg []byte) bool {
	return len(msg) >= 2 && msg[0] == 0x80 && msg[1] >= 2 && msg[1] <= 5
}

// Classes that requests may name, and that replies name.
var (
	pyTokenClass = ogórek.Class{Module: "multiprocessing.managers", Name: "Token"}
	pySliceClass = ogórek.Class{Module: "builtins", Name: "slice"}
	pyRangeClass = ogórek.Class{Module: "builtins", Name: "range"}

	pyDecodeOpts = pickle.Options{Allow: append([]ogórek.Class{pyTokenClass, pySliceClass, pyRangeClass}, pyProxyClasses()...)}
	pyEncodeOpts = pickle.Options{}
)

// A pyMsg is a reply: a kind ("#RETURN", ...) and its value.
type pyMsg struct {
	kind string
	val  any
}

func pyReturn(v any) pyMsg { return pyMsg{"#RETURN", v} }

// Exception classes the server raises in Python clients.
var (
	excKeyError       = builtinExc("KeyError")
	excValueError     = builtinExc("ValueError")
	excTypeError      = builtinExc("TypeError")
	excIndexError     = builtinExc("IndexError")
	excOverflowError  = builtinExc("OverflowError")
	excMemoryError    = builtinExc("MemoryError")
	excAttributeError = builtinExc("AttributeError")
	excRuntimeError   = builtinExc("RuntimeError")
	excStopIteration  = builtinExc("StopIteration")
	excPermission     = builtinExc("PermissionError")
	excReference      = builtinExc("ReferenceError")
	excEmpty          = ogórek.Class{Module: "queue", Name: "Empty"}
	excFull           = ogórek.Class{Module: "queue", Name: "Full"}
	excBrokenBarrier  = ogórek.Class{Module: "threading", Name: "BrokenBarrierError"}
)

func builtinExc(name string) ogórek.Class { return ogórek.Class{Module: "builtins", Name: name} }

// pyRaise is the reply that raises cls(args...) in the client.
func pyRaise(cls ogórek.Class, args ...any) pyMsg {
	return pyMsg{"#ERROR", ogórek.Call{Callable: cls, Args: ogórek.Tuple(args)}}
}

// pyTraceback is the reply that raises a RemoteError carrying text.
func pyTraceback(format string, a ...any) pyMsg {
	return pyMsg{"#TRACEBACK", fmt.Sprintf(format, a...)}
}

// pyFail is the reply for err: the exception a *pyExc names, a
// ValueError for arguments out of range, a TypeError for values that
// cannot cross, a RemoteError otherwise.
func pyFail(err error) pyMsg {
	if e := (*pyExc)(nil); errors.As(err, &e) {
		return pyRaise(e.cls, e.msg)
	}
	if r := (*pyOutOfRange)(nil); errors.As(err, &r) {
		return pyRaise(excValueError, r.msg)
	}
	if isPyTypeError(err) {
		return pyRaise(excTypeError, err.Error())
	}
	return pyTraceback("mp manager: %v\n", err)
}

// pyRequest is a decoded request (id, name, args, kwds).
type pyRequest struct {
	ident any
	name  string
	args  pyArgs
	pos   [pickle.MaxRequestArgs]any // args.pos of a request read by pickle.DecodeRequest
}

// pyArgs are the arguments of a request.
type pyArgs struct {
	pos []any
	kw  *pickle.Dict // in the order of the call, as Python's **kwargs
}

// nkw returns the number of keyword arguments.
func (a *pyArgs) nkw() int { return a.kw.Len() }

// get returns positional argument i, or the keyword argument name.
func (a *pyArgs) get(i int, name string) (any, bool) {
	if i < len(a.pos) {
		return a.pos[i], true
	}
	if name == "" || a.nkw() == 0 {
		return nil, false
	}
	return a.kw.Get(name)
}

// check fails unless the arguments fit a signature of the given names
// (positional or keyword), the first required of them needed.
func (a *pyArgs) check(fn string, required int, names ...string) error {
	if len(a.pos) > len(names) {
		return &pyTypeError{fmt.Sprintf("%s() takes at most %d arguments (%d given)", fn, len(names), len(a.pos))}
	}
	if a.nkw() > 0 {
		for k := range a.kw.All() {
			ks, _ := k.(string)
			i := indexOf(names, ks)
			if i < 0 {
				return &pyTypeError{fmt.Sprintf("%s() got an unexpected keyword argument %v", fn, k)}
			}
			if i < len(a.pos) {
				return &pyTypeError{fmt.Sprintf("%s() got multiple values for argument '%s'", fn, ks)}
			}
		}
	}
	for i := 0; i < required; i++ {
		if _, ok := a.get(i, names[i]); !ok {
			return &pyTypeError{fmt.Sprintf("%s() missing required argument '%s'", fn, names[i])}
		}
	}
	return nil
}

func indexOf(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	return -1
}

// A pyReader decodes the requests of one connection: those of the
// common shape (pickle.Request) without the general decoder, and without
// allocating their ident and method name again when they repeat.
type pyReader struct {
	r     pickle.Request
	ident any // r.Ident, boxed
}

// decode decodes a request.
func (rd *pyReader) decode(msg []byte) (*pyRequest, error) {
	if !pickle.DecodeRequest(msg, &rd.r) {
		return decodeRequest(msg)
	}
	if s, ok := rd.ident.(string); !ok || s != rd.r.Ident {
		rd.ident = rd.r.Ident
	}
	req := &pyRequest{ident: rd.ident, name: rd.r.Name}
	req.args.pos = append(req.pos[:0], rd.r.Args[:rd.r.NArgs]...)
	return req, nil
}

// decodeRequest decodes a request of any shape.
func decodeRequest(msg []byte) (*pyRequest, error) {
	v, err := pickle.Decode(msg, pyDecodeOpts)
	if err != nil {
		return nil, err
	}
	t, ok := v.(ogórek.Tuple)
	if !ok || len(t) != 4 {
		return nil, errors.New("a request is a tuple (id, name, args, kwds)")
	}
	req := &pyRequest{ident: t[0]}
	if req.name, ok = t[1].(string); !ok {
		return nil, errors.New("a request's name is a str")
	}
	if req.args.pos, ok = pySeq(t[2]); !ok {
		return nil, errors.New("a request's args are a tuple")
	}
	switch kw := t[3].(type) {
	case *pickle.Dict:
		// Keyword names are strs, as a call in Python requires; those
		// who read them (Namespace's fields, the signatures of check)
		// may rely on it.
		for k := range kw.All() {
			if _, ok := k.(string); !ok {
				return nil, &pyTypeError{"keywords must be strings"}
			}
		}
		req.args.kw = kw
	case nil:
	default:
		return nil, errors.New("a request's kwds are a dict")
	}
	return req, nil
}

// pySend sends a reply; it reports whether it was sent.
func (c *sconn) pySend(m pyMsg) bool {
	if ps := c.c.py.Load(); ps != nil && c.c.maxSend == 0 {
		return ps.sendPair(m) == nil
	}
	return c.c.SendBytes(appendPyReply(nil, m)) == nil
}

// appendPyReply appends the pickle of m to b. A value that cannot be
// pickled (a bug: the server makes them) is sent as ("#UNSERIALIZABLE",
// why).
func appendPyReply(b []byte, m pyMsg) []byte {
	out, err := pickle.AppendEncodePair(b, m.kind, m.val, pyEncodeOpts)
	if err != nil {
		out, _ = pickle.AppendEncodePair(b, "#UNSERIALIZABLE", err.Error(), pyEncodeOpts)
	}
	return out
}

// servePython serves a CPython client whose first message is first.
func (c *sconn) servePython(first []byte) {
	s := c.s
	req, err := decodeRequest(first)
	if err != nil {
		c.pySend(pyFail(err))
		return
	}
	if req.name != "accept_connection" {
		c.guard(req.name, func() { c.pySend(c.pyPublic(req)) })
		return
	}
	var sid sessionID
	rand.Read(sid[:])
	c.sess = s.join(sid, peerPid(c.c.sock))
	c.r.s, c.r.sess = s, c.sess
	if c.pySend(pyReturn(nil)) {
		c.pyServeClient()
	}
	c.finish()
	if ps := c.c.py.Load(); ps != nil {
		ps.close() // after finish: a wait's reply may still have been sent
	}
}

// peerPid returns the pid of the process at the other end of a unix
// socket, or -1 when the server cannot know it (TCP). A lock whose Python
// holder died names it to the next acquirer (*mp.OwnerDiedError): -1
// still says that the holder died.
func peerPid(c *mp.Conn) int {
	fd, err := c.Fileno()
	if err != nil {
		return -1
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil || cred.Pid <= 0 {
		return -1
	}
	return int(cred.Pid)
}

// pyServeClient serves the method calls of one proxy thread until the
// connection ends. Python sends nothing while a call waits: a request
// then is out of protocol, and hung up on.
//
// Its requests are read through the Conn only while the Conn holds bytes
// it has read (a client that sent more than its first request before the
// reply), or while the server has pyMaxThreads connections on threads of
// their own; then the goroutine takes the socket for a thread of its own
// (see py_sock.go).
func (c *sconn) pyServeClient() {
	s := c.s
	var ps *pySock
	var rd pyReader
	for {
		var msg []byte
		var err error
		if ps == nil {
			ready, perr := c.c.sock.Poll(0)
			if perr == nil && !ready {
				if s.pyThreads.Add(1) <= pyMaxThreads {
					if ps, err = c.c.takePySock(); err != nil {
						s.pyThreads.Add(-1)
						return
					}
					defer s.pyThreads.Add(-1)
					continue
				}
				s.pyThreads.Add(-1)
				// Sleep in the poller until a request comes, rather than
				// poll the socket for one as mp.Conn's receive does
				// first: the client takes tens of microseconds to send
				// it, and the polling would take a CPU from it meanwhile.
				if _, err := c.c.sock.Poll(-1); err != nil {
					return
				}
			}
			msg, err = c.recv()
		} else {
			msg, err = ps.recv()
		}
		if errors.Is(err, mp.ErrMessageTooLong) && c.idle() {
			c.pySend(pyTraceback("mp manager: %v\n", err))
			continue
		}
		if err != nil {
			return
		}
		if c.pending() != nil {
			c.c.Close() // hang up now: the wait's reply is not to be sent
			return
		}
		req, err := rd.decode(msg)
		if err != nil {
			c.pySend(pyFail(err))
			continue
		}
		if !c.guard(req.name, func() { c.callMethod(req) }) {
			return
		}
	}
}

// guard runs f, which serves a Python request of method name, and
// reports whether it returned. A panic in f (a bug of the server's that
// a request found: none is known) ends this connection only, as the end
// of its client would, rather than the server and every client with it:
// the server logs it with its stack (at level Error, see Server.Logger)
// and serves the others on. No mutex is left locked: every critical
// section on the way that calls anything that could panic releases its
// mutex in a defer (see withLock), so the object the request was using
// is served on to its other users, Go or Python. What the request did
// before the panic stays done, though, and an object it was changing may
// be left half changed. What its client held (a Lock, units of a
// BoundedSemaphore) is given back as the connection ends. Only f is
// guarded: the wait of a call that blocks (an acquire, a queue's get)
// and the reply made when it ends run in a goroutine of their own (see
// sconn.waitAside), where a panic ends the server, as one does anywhere
// in serving a Go client's request.
func (c *sconn) guard(name string, f func()) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			mplog.Or(c.s.Logger).Error("mp: manager: a Python request panicked; its connection is closed",
				"method", name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			c.c.Close()
			ok = false
		}
	}()
	if h := testHookPyRequest.Load(); h != nil {
		(*h)(name)
	}
	f()
	return true
}

// testHookPyRequest, if a test sets it, is called with the method name of
// each Python request before it is served.
var testHookPyRequest atomic.Pointer[func(name string)]

// testHookPyLocked, if a test sets it, is called with the method name of
// a Python request while the request holds its object's lock (in the
// handlers that call it: Namespace's __repr__, list's index with bounds).
var testHookPyLocked atomic.Pointer[func(name string)]

// pyLockedHook calls testHookPyLocked, if set.
func pyLockedHook(name string) {
	if h := testHookPyLocked.Load(); h != nil {
		(*h)(name)
	}
}

// pyIdent parses an object id as Python clients hold it: hexadecimal
// text, as CPython's server makes them.
func pyIdent(v any) (uint64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 16, 64)
	return id, err == nil && id != 0
}

func pyIdentOf(id uint64) string { return strconv.FormatUint(id, 16) }

// pyPublic answers a request for one of the public functions.
func (c *sconn) pyPublic(req *pyRequest) pyMsg {
	s := c.s
	a := &req.args
	switch req.name {
	case "dummy":
		return pyReturn(nil)
	case "create":
		return c.pyCreate(a)
	case "incref", "decref":
		if err := a.check(req.name, 1, "ident"); err != nil {
			return pyFail(err)
		}
		v, _ := a.get(0, "ident")
		id, ok := pyIdent(v)
		if !ok {
			return pyRaise(excKeyError, v)
		}
		if req.name == "incref" {
			if !s.pyIncref(id) {
				return pyRaise(excKeyError, v)
			}
		} else if !s.pyDecref(id) {
			return pyRaise(excKeyError, v)
		}
		return pyReturn(nil)
	case "get_methods":
		v, _ := a.get(0, "token")
		id, ok := tokenIdent(v)
		o := s.lookup(id)
		if !ok || o == nil {
			return pyRaise(excKeyError, fmt.Sprint(v))
		}
		return pyReturn(pyExposed(o))
	case "number_of_objects":
		n, _ := s.counts()
		return pyReturn(int64(n))
	case "debug_info":
		return pyReturn(s.pyDebugInfo())
	case "shutdown":
		// Refused whatever AllowShutdown says, which is for the Go
		// program that started the server: no Python client owns a Go
		// server (CPython's clients send shutdown only to a server their
		// own process started), so one that sends it would stop the
		// server under everyone else.
		return pyRaise(excPermission, "Python clients cannot shut an mp manager down")
	}
	return pyRaise(excValueError, fmt.Sprintf("%q is not a function of the manager", req.name))
}

// tokenIdent reads the id of a Token as get_methods receives it.
func tokenIdent(v any) (uint64, bool) {
	o, ok := v.(*pickle.Object)
	if !ok || o.Class != pyTokenClass {
		return 0, false
	}
	st, ok := o.State.(ogórek.Tuple)
	if !ok || len(st) != 3 {
		return 0, false
	}
	return pyIdent(st[2])
}

// pyToken is the token of object id of type typeid, as a reply carries
// it: the client sets its address itself.
func pyToken(typeid string, id uint64) any {
	return &pickle.Object{Class: pyTokenClass, New: true, State: ogórek.Tuple{typeid, nil, pyIdentOf(id)}}
}

// pyAdd serves a new object, referred to by one Python reference.
func (s *Server) pyAdd(kind string, im impl) *object {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &object{id: s.newID(), kind: kind, impl: im, refs: 1, pyrefs: 1}
	s.objects[o.id] = o
	return o
}

// pyIncref adds a Python reference to object id; false if there is none.
func (s *Server) pyIncref(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[id]
	if o == nil {
		return false
	}
	o.refs++
	o.pyrefs++
	return true
}

// pyDecref drops a Python reference to object id; false if Python holds
// none (the references of Go clients and names are not Python's to drop).
func (s *Server) pyDecref(id uint64) bool {
	s.mu.Lock()
	o := s.objects[id]
	if o == nil || o.pyrefs == 0 {
		s.mu.Unlock()
		return false
	}
	o.pyrefs--
	s.mu.Unlock()
	s.decref(id)
	return true
}

// pyDebugInfo answers debug_info: the objects the server holds, as
// CPython's server lists them, but without their ids. An id is what lets
// a client use an object (ids are drawn at random, see newID), and any
// client may ask for debug_info: listed, the ids would hand every client
// every object, Go clients' unnamed ones among them.
func (s *Server) pyDebugInfo() string {
	var lines []string
	func() {
		s.mu.RLock()
		defer s.mu.RUnlock() // even if the formatting panics (see withLock)
		for _, o := range s.objects {
			lines = append(lines, fmt.Sprintf("refcount=%d (python %d)\n    <%s>", o.refs, o.pyrefs, o.kind))
		}
	}()
	sort.Strings(lines)
	for i, l := range lines {
		lines[i] = fmt.Sprintf("  object %d:       %s", i+1, l)
	}
	return strings.Join(lines, "\n")
}

// ---- method calls ----

// A pyCall is one method call being served.
type pyCall struct {
	c    *sconn
	o    *object
	name string
	args pyArgs
}

// callMethod serves a method call.
func (c *sconn) callMethod(req *pyRequest) {
	id, ok := pyIdent(req.ident)
	o := c.s.lookup(id)
	if !ok || o == nil {
		c.pySend(pyRaise(excKeyError, req.ident))
		return
	}
	pc := &pyCall{c: c, o: o, name: req.name, args: req.args}
	if m := pyMethodsOf(o)[req.name]; m != nil {
		m(pc)
		return
	}
	switch req.name {
	case "#GETVALUE", "__repr__", "__str__":
		pyFallback(pc)
		return
	}
	c.pySend(pyRaise(excAttributeError, fmt.Sprintf("method %q of a %s object is not exposed by the mp manager", req.name, o.kind)))
}

// reply sends the call's reply.
func (pc *pyCall) reply(m pyMsg) { pc.c.pySend(m) }

// ret replies with v.
func (pc *pyCall) ret(v any) { pc.reply(pyReturn(v)) }

// fail replies with err (see pyFail).
func (pc *pyCall) fail(err error) { pc.reply(pyFail(err)) }

// check checks the call's arguments (see pyArgs.check), replying with
// the error if they do not fit.
func (pc *pyCall) check(required int, names ...string) bool {
	if err := pc.args.check(pc.name, required, names...); err != nil {
		pc.fail(err)
		return false
	}
	return true
}

// arg returns argument i (or keyword name), or def.
func (pc *pyCall) arg(i int, name string, def any) any {
	if v, ok := pc.args.get(i, name); ok {
		return v
	}
	return def
}

// An opResult is the reply of an operation of an object: its results if
// ok, else the error's code and message.
type opResult struct {
	c     *sconn // where the result goes
	ok    bool
	items [][]byte
	code  uint64
	msg   string
}

// result parses the reply r.
func parseResult(r *reply) opResult {
	b := r.buf[headroom:]
	items := make([][]byte, 0, r.n)
	for i := uint64(0); i < r.n; i++ {
		m, err := codec.Skip(b, 1)
		if err != nil {
			break
		}
		items = append(items, b[:m])
		b = b[m:]
	}
	var res opResult
	if len(items) == 0 {
		res.code, res.msg = codeProtocol, "empty reply"
		return res
	}
	if items[0][0] == statusOK {
		res.ok, res.items = true, items[1:]
		return res
	}
	if len(items) >= 3 {
		res.code, _, _ = codec.ReadUint(items[1])
		res.msg, _ = codec.ReadText(items[2])
		res.items = items[3:]
	}
	return res
}

// value returns result item i as a Python value.
func (res *opResult) value(i int) (any, error) {
	if i >= len(res.items) {
		return nil, errors.New("short reply")
	}
	return decodePy(res.c, res.items[i])
}

// int returns result item i as an integer.
func (res *opResult) int(i int) int64 {
	if i >= len(res.items) {
		return 0
	}
	v, _ := codec.ReadInt(res.items[i])
	return v
}

// bool returns result item i as a boolean.
func (res *opResult) bool(i int) bool {
	return i < len(res.items) && len(res.items[i]) == 1 && res.items[i][0] == codec.True
}

// exc is the reply for a failed operation, by its code.
func (res *opResult) exc() pyMsg {
	cls := excRuntimeError
	switch res.code {
	case codeIndex:
		cls = excIndexError
	case codeNoField, codeWrongKind, codeNoMethod:
		cls = excAttributeError
	case codeEmpty:
		return pyRaise(excEmpty)
	case codeFull:
		return pyRaise(excFull)
	case codeTooManyReleases, codeTaskDone, codeProtocol, codeBadArgs:
		cls = excValueError
	case codeBroken, codeTimeout:
		return pyRaise(excBrokenBarrier)
	case codeNoObject:
		cls = excReference
	case codeNotAllowed:
		cls = excPermission
	}
	return pyRaise(cls, res.msg)
}

// noTimeout is the timeout of a call that waits for as long as it takes.
const noTimeout = time.Duration(-1)

// pyTimeout reads a Python timeout in seconds (None: noTimeout). Negative
// timeouts are the caller's to judge: they come back negative.
func pyTimeout(v any) (time.Duration, error) {
	if v == nil {
		return noTimeout, nil
	}
	f, ok := pyFloat(v)
	if !ok || math.IsNaN(f) {
		return 0, &pyTypeError{fmt.Sprintf("a timeout is a number, not %s", pickle.TypeName(v))}
	}
	if f < 0 {
		return -1, nil
	}
	if f > float64(math.MaxInt64/2)/float64(time.Second) {
		return noTimeout, nil // longer than anyone waits
	}
	return time.Duration(f * float64(time.Second)), nil
}

// run runs operation op of the call's object with args and replies with
// what fin makes of its result. An operation that waits does so in a
// goroutine of its own, for at most timeout (see sconn.waitAside, which
// Go clients' waits go through too).
func (pc *pyCall) run(op uint64, timeout time.Duration, args [][]byte, fin func(res *opResult) pyMsg) {
	c := pc.c
	s := c.s
	r := &c.r
	r.reset()
	x := &call{s: s, c: c, sess: c.sess, obj: pc.o, op: op, args: args, r: r}
	wait := pc.o.impl.handle(x)
	if wait == nil {
		c.pyFinish(r, fin)
		return
	}
	c.waitAside(wait, timeout, func(r *reply) { c.pyFinish(r, fin) })
}

// pyFinish replies to an operation that ended with r. An item a queue's
// get handed over is the client's once the reply is sent, and goes back
// to its queue if it could not be.
func (c *sconn) pyFinish(r *reply, fin func(res *opResult) pyMsg) {
	res := parseResult(r)
	res.c = c
	sent := c.pySend(fin(&res))
	if sent {
		c.acked()
	} else {
		c.undeliver()
	}
	c.flushDrops(r)
}

// args1 is the argument list of an operation that takes one.
func args1(b []byte) [][]byte { return [][]byte{b} }

// gid0 is the goroutine id of a Python proxy thread: each has a
// connection, and a session, of its own.
var gid0 = codec.AppendUint(nil, 0)

//go:build linux

package manager

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/codec"
)

var (
	// ErrManagerGone is returned by a proxy call when the manager cannot be
	// reached any more: its process ended, it closed the connection, or it
	// cannot be connected to. Such an error always matches io.EOF too (the
	// end of the connection), and unwraps to what the connection reported
	// (a reset, a refused connection...). A call whose ctx has ended never
	// returns it: it returns ctx.Err() instead.
	ErrManagerGone = errors.New("manager: the manager is gone")
	// ErrNoObject is returned for an object that the manager no longer
	// holds: it was released, or the proxy comes from an earlier run of
	// the manager.
	ErrNoObject = errors.New("manager: no such object (released)")
	// ErrWrongKind is returned when a proxy or a name refers to an object
	// of another kind (a Dict where a List is expected, say).
	ErrWrongKind = errors.New("manager: object of another kind")
	// ErrIndex is returned by List and Array operations given an index out
	// of range (Python's IndexError).
	ErrIndex = errors.New("manager: index out of range")
	// ErrNoField is returned by Namespace.Get for a field that is not set
	// (Python's AttributeError).
	ErrNoField = errors.New("manager: no such field")
	// ErrUnknownType is returned when creating an object of a type the
	// server has not registered.
	ErrUnknownType = errors.New("manager: unknown type")
	// ErrUnknownMethod is returned when calling a method that the type
	// does not expose.
	ErrUnknownMethod = errors.New("manager: unknown method")
	// ErrNotAllowed is returned by Shutdown when the server does not let
	// clients stop it.
	ErrNotAllowed = errors.New("manager: not allowed")
)

// cancelGrace is how long a call whose ctx ended waits for the server to
// answer its cancel, or for a connection being made to be ready, before it
// gives up on the connection.
const cancelGrace = 2 * time.Second

// goneError is the error of a call whose connection to the manager broke:
// it matches ErrManagerGone and io.EOF, whatever the connection reported,
// and unwraps to that.
type goneError struct{ cause error }

func (e *goneError) Error() string { return ErrManagerGone.Error() + ": " + e.cause.Error() }

func (e *goneError) Is(target error) bool { return target == ErrManagerGone || target == io.EOF }

func (e *goneError) Unwrap() error { return e.cause }

// graceful returns a context with ctx's values that ends cancelGrace after
// ctx does: the bound of the steps of a call that cannot be cut short
// without losing the connection (making it, and its handshake).
func graceful(ctx context.Context) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu sync.Mutex
		t  *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		t = time.AfterFunc(cancelGrace, cancel)
		mu.Unlock()
	})
	return g, func() {
		stop()
		mu.Lock()
		if t != nil {
			t.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// maxIdle is the number of idle connections a client keeps per manager.
const maxIdle = 16

// A client is this process's session with one manager: a pool of
// connections, each used by one call at a time. The server keeps what the
// session holds (locks, references) until the last of them closes, so the
// pool never closes its last connection before the client is closed.
type client struct {
	network string
	address string
	key     []byte // nil: mp.CurrentProcess().Authkey
	tls     *tls.Config
	sid     sessionID

	instance  atomic.Uint64 // the server's, from the first hello
	serverPid atomic.Int64

	mu     sync.Mutex
	idle   []*cconn
	all    map[*cconn]struct{}
	closed bool
}

func newClient(network, address string, key []byte) *client {
	c := &client{network: network, address: address, key: key, all: map[*cconn]struct{}{}}
	rand.Read(c.sid[:])
	return c
}

// registry maps managers (their run, and their address) to the client
// that proxies decoded in this process (received as arguments or inside
// values) use.
var registry struct {
	sync.Mutex
	byAddr map[string]*client
	byInst map[uint64]*client
}

func regKey(network, address string) string { return network + "\x00" + address }

// register makes c the client of its manager unless there is one.
func register(c *client) {
	registry.Lock()
	defer registry.Unlock()
	if registry.byAddr == nil {
		registry.byAddr = map[string]*client{}
		registry.byInst = map[uint64]*client{}
	}
	k := regKey(c.network, c.address)
	if _, ok := registry.byAddr[k]; !ok {
		registry.byAddr[k] = c
	}
	if inst := c.instance.Load(); inst != 0 {
		if _, ok := registry.byInst[inst]; !ok {
			registry.byInst[inst] = c
		}
	}
}

func unregister(c *client) {
	registry.Lock()
	defer registry.Unlock()
	k := regKey(c.network, c.address)
	if registry.byAddr[k] == c {
		delete(registry.byAddr, k)
	}
	if inst := c.instance.Load(); registry.byInst[inst] == c {
		delete(registry.byInst, inst)
	}
}

// clientFor returns the client for a token: that of a Manager of this
// process connected to the same run of the manager (under whatever
// address), else that of the token's address, made with the process's
// authkey if there is none.
func clientFor(t *token) *client {
	registry.Lock()
	defer registry.Unlock()
	if registry.byAddr == nil {
		registry.byAddr = map[string]*client{}
		registry.byInst = map[uint64]*client{}
	}
	if c := registry.byInst[t.Instance]; c != nil {
		return c
	}
	k := regKey(t.Network, t.Address)
	c := registry.byAddr[k]
	if c == nil {
		c = newClient(t.Network, t.Address, nil)
		registry.byAddr[k] = c
	}
	return c
}

// cconn is the client's side of one connection.
type cconn struct {
	cl      *client
	c       *link
	wb      bytes.Buffer
	rb      []byte
	items   [][]byte
	replied bool // the last request was answered
	broken  bool
	// kvAck, in the reply of a replicated store's Get (see kv.go), takes
	// the item for good; such a reply has no client.
	kvAck func(context.Context) error
}

var cancelMsg = []byte{0x82, byte(opCancel), 0x00}

// ackMsg acknowledges the item of a queue's Get reply (see take).
var ackMsg = codec.AppendUint(codec.AppendUint(codec.AppendHead(nil, 4, 2), opAck), 0)

// get takes an idle connection, or makes one. It does so even when ctx has
// ended: a call whose ctx is done is still made, to return what is ready
// without waiting (see roundTrip).
func (c *client) get(ctx context.Context) (*cconn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, mp.ErrClosed
	}
	if n := len(c.idle); n > 0 {
		cc := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cc, nil
	}
	c.mu.Unlock()
	return c.dial(ctx)
}

// dial opens a connection, says hello and, over a unix socket, moves it
// onto rings. Making a connection is not waiting: it goes on for up to
// cancelGrace after ctx ends, so that a call made with a short or an ended
// ctx still gets its look at the object (the connection then serves the
// next calls too). If it fails once ctx has ended, the error is ctx's.
func (c *client) dial(ctx context.Context) (*cconn, error) {
	dctx, cancel := graceful(ctx)
	defer cancel()
	conn, err := connection.Dialer{TLS: c.tls}.Dial(dctx, c.network, c.address, c.key)
	if err != nil {
		if errors.Is(err, mp.ErrAuthentication) {
			return nil, err
		}
		return nil, c.broke(ctx, err)
	}
	cc := &cconn{cl: c, c: newLink(conn)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return nil, mp.ErrClosed
	}
	c.all[cc] = struct{}{}
	c.mu.Unlock()
	// The handshake's requests are not cancelled with a cancel request
	// (the server reads the memory of the rings right after the upgrade's
	// reply, and would take the cancel for it): the connection is closed
	// instead when dctx ends.
	stop := context.AfterFunc(dctx, func() { cc.c.Close() })
	err = cc.handshake(dctx)
	if !stop() && err == nil {
		err = dctx.Err()
	}
	if err != nil {
		cc.broken = true
		c.put(cc)
		if ctx.Err() != nil && !c.isClosed() {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return cc, nil
}

// handshake says hello on a new connection (naming the session) and, over
// a unix socket, moves it onto rings. ctx only maps the errors: dial bounds
// the handshake.
func (cc *cconn) handshake(ctx context.Context) error {
	c := cc.cl
	cc.start(opHello, 0, 5)
	b := cc.wb.AvailableBuffer()
	b = append(codec.AppendHead(b, 2, uint64(len(c.sid))), c.sid[:]...)
	b = codec.AppendUint(b, uint64(os.Getpid()))
	b = codec.AppendUint(b, protocolVersion)
	b = codec.AppendText(b, c.network)
	b = codec.AppendText(b, c.address)
	cc.wb.Write(b)
	if err := cc.exchange(ctx, false); err != nil {
		return err
	}
	inst, _, err1 := codec.ReadUint(cc.item(1))
	pid, _, err2 := codec.ReadUint(cc.item(2))
	if err1 != nil || err2 != nil {
		return errors.New("manager: malformed hello reply")
	}
	// The server's limit, if it says one; a value no int64 holds would
	// turn the check off, and is taken as none given.
	if limit, _, err := codec.ReadUint(cc.item(3)); err == nil && limit > 0 && limit <= math.MaxInt64 {
		cc.c.maxSend = int64(limit)
	}
	c.instance.CompareAndSwap(0, inst)
	c.serverPid.Store(int64(pid))
	if c.instance.Load() != inst {
		// The server was restarted at the same address: this session's
		// state is gone with the first one.
		return &goneError{fmt.Errorf("the manager at %s was restarted", c.address)}
	}
	// Shared memory is passed as a descriptor, which cannot go through
	// TLS: such connections stay on their socket.
	if c.network == "unix" && c.tls == nil {
		return cc.upgrade(ctx)
	}
	return nil
}

// upgrade moves the connection onto rings in shared memory (opUpgrade):
// the server agrees, then the memory goes, and the rings carry the rest.
// A server that cannot share memory with us says so, and the connection
// stays on its socket.
func (cc *cconn) upgrade(ctx context.Context) error {
	mem, err := newRingMemory()
	if err != nil {
		return nil // no shared memory here: the socket will do
	}
	cc.start(opUpgrade, 0, 0)
	if err := cc.exchange(ctx, false); err != nil {
		mem.Close()
		if errors.Is(err, ErrManagerGone) || ctx.Err() != nil {
			return err
		}
		return nil // refused: stay on the socket
	}
	// After the reply, so that the handle does not come in one read with
	// the request (a bytes message drops the handles that come with it).
	if err := cc.c.sock.Send(mem); err != nil {
		mem.Close()
		return cc.cl.broke(ctx, err)
	}
	if err := cc.c.useRing(mem, true); err != nil {
		mem.Close()
		return err
	}
	return nil
}

// put returns a connection to the pool, or closes it.
func (c *client) put(cc *cconn) {
	c.mu.Lock()
	if cc.broken || c.closed || len(c.idle) >= maxIdle {
		delete(c.all, cc)
		c.mu.Unlock()
		cc.c.Close()
		return
	}
	if cap(cc.rb) > 1<<20 {
		cc.rb = nil
	}
	if cc.wb.Cap() > 1<<20 {
		cc.wb = bytes.Buffer{}
	}
	c.idle = append(c.idle, cc)
	c.mu.Unlock()
}

// close closes every connection, interrupting the calls under way.
func (c *client) close() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*cconn, 0, len(c.all))
	for cc := range c.all {
		conns = append(conns, cc)
	}
	c.all = map[*cconn]struct{}{}
	c.idle = nil
	c.mu.Unlock()
	for _, cc := range conns {
		cc.c.Close()
	}
}

func (c *client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// start begins a request of nargs arguments.
func (cc *cconn) start(op, id uint64, nargs int) {
	cc.wb.Reset()
	b := cc.wb.AvailableBuffer()
	b = codec.AppendHead(b, 4, uint64(2+nargs))
	b = codec.AppendUint(b, op)
	b = codec.AppendUint(b, id)
	cc.wb.Write(b)
}

// raw is an argument already encoded.
type raw []byte

// arg encodes one argument.
func (cc *cconn) arg(v any) error {
	switch v := v.(type) {
	case raw:
		cc.wb.Write(v)
	case int:
		cc.wb.Write(codec.AppendInt(cc.wb.AvailableBuffer(), int64(v)))
	case int64:
		cc.wb.Write(codec.AppendInt(cc.wb.AvailableBuffer(), v))
	case int32:
		cc.wb.Write(codec.AppendInt(cc.wb.AvailableBuffer(), int64(v)))
	case uint64:
		cc.wb.Write(codec.AppendUint(cc.wb.AvailableBuffer(), v))
	case uint32:
		cc.wb.Write(codec.AppendUint(cc.wb.AvailableBuffer(), uint64(v)))
	case string:
		cc.wb.Write(codec.AppendText(cc.wb.AvailableBuffer(), v))
	case bool:
		cc.wb.Write(codec.AppendBool(cc.wb.AvailableBuffer(), v))
	case nil:
		cc.wb.WriteByte(codec.Null)
	default:
		if err := codec.DetMarshalToBuffer(v, &cc.wb); err != nil {
			return fmt.Errorf("manager: encode %T: %w", v, err)
		}
	}
	return nil
}

// item returns item i of the reply (0 is the status).
func (cc *cconn) item(i int) []byte {
	if i < len(cc.items) {
		return cc.items[i]
	}
	return nil
}

// boolItem, intItem and decode read reply items.
func (cc *cconn) boolItem(i int) bool { b := cc.item(i); return len(b) == 1 && b[0] == 0xf5 }

func (cc *cconn) intItem(i int) int {
	v, _ := codec.ReadInt(cc.item(i))
	return int(v)
}

func (cc *cconn) decode(i int, v any) error {
	b := cc.item(i)
	if decodeScalar(b, v) {
		return nil
	}
	if err := codec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("manager: decode into %T: %w", v, err)
	}
	return nil
}

// decodeScalar decodes the commonest items without reflection. It
// reports false when it does not handle the item or the type (the codec
// then does, and reports any error).
func decodeScalar(b []byte, v any) bool {
	switch v := v.(type) {
	case *int:
		n, err := codec.ReadInt(b)
		if err != nil || int64(int(n)) != n {
			return false
		}
		*v = int(n)
	case *int64:
		n, err := codec.ReadInt(b)
		if err != nil {
			return false
		}
		*v = n
	case *string:
		s, err := codec.ReadText(b)
		if err != nil || !utf8.ValidString(s) {
			return false
		}
		*v = s
	case *bool:
		if len(b) != 1 || (b[0] != 0xf4 && b[0] != 0xf5) {
			return false
		}
		*v = b[0] == 0xf5
	default:
		return false
	}
	return true
}

func (cc *cconn) recv() ([]byte, error) {
	if cc.rb == nil {
		cc.rb = make([]byte, 4<<10)
	}
	n, err := cc.c.RecvBytesInto(cc.rb, 0)
	if err == nil {
		return cc.rb[:n], nil
	}
	var short *mp.BufferTooShortError
	if errors.As(err, &short) {
		if len(short.Message) <= 1<<20 {
			cc.rb = make([]byte, max(2*len(cc.rb), len(short.Message)))
		}
		return short.Message, nil
	}
	return nil, err
}

// roundTrip sends the request built in wb and reads the reply into items.
// When ctx ends first — or has already ended: the request is made all the
// same, so that a result ready at once wins over a done ctx — the server
// is asked to cancel the request; if it does not answer within
// cancelGrace, the connection is given up and the call returns ctx.Err().
func (cc *cconn) roundTrip(ctx context.Context) error { return cc.exchange(ctx, true) }

// testHookSent, set by tests only (see export_test.go), runs once a
// request has been sent, before its reply is read.
var testHookSent atomic.Pointer[func()]

// exchange is roundTrip, with a cancel request when ctx ends only if
// cancel is set (otherwise the caller bounds the exchange). A connection
// that fails after ctx has ended fails with ctx's error.
func (cc *cconn) exchange(ctx context.Context, cancel bool) error {
	cc.replied = false
	if err := cc.c.SendBytes(cc.wb.Bytes()); err != nil {
		if errors.Is(err, mp.ErrMessageTooLong) {
			return err // not sent: the connection is as it was
		}
		cc.broken = true
		return cc.cl.broke(ctx, err)
	}
	if h := testHookSent.Load(); h != nil {
		(*h)()
	}
	var w *cancelWatch
	if cancel && ctx.Done() != nil {
		w = cc.watch(ctx)
	}
	msg, err := cc.recv()
	if w != nil && !w.stop() {
		<-w.done
		if !w.grace.Stop() {
			cc.broken = true // closed for want of an answer
		}
	}
	if err != nil {
		cc.broken = true
		return cc.cl.broke(ctx, err)
	}
	cc.items, err = codec.SplitMessage(cc.items[:0], msg)
	if err != nil || len(cc.items) == 0 {
		cc.broken = true
		return cc.cl.broke(ctx, errMalformedReply)
	}
	status, _, err := codec.ReadUint(cc.items[0])
	cc.replied = err == nil
	switch {
	case err != nil:
		cc.broken = true
		return cc.cl.broke(ctx, errMalformedReply)
	case status == statusOK:
		return nil
	}
	return cc.replyError(ctx)
}

// ack acknowledges the item of the queue's Get reply just received, which
// then is the caller's: the server puts it back into its queue if the
// connection ends before the ack arrives. Nothing answers the ack; a
// connection that fails to carry it fails the call (the item is then not
// the caller's).
func (cc *cconn) ack(ctx context.Context) error {
	if cc.cl == nil {
		return cc.kvAck(ctx)
	}
	if err := cc.c.SendBytes(ackMsg); err != nil {
		cc.broken = true
		return cc.cl.broke(ctx, err)
	}
	return nil
}

// A cancelWatch asks the server to cancel the request under way when ctx
// ends, and gives up on the connection if no answer comes within
// cancelGrace.
type cancelWatch struct {
	stop  func() bool
	done  chan struct{} // closed once the cancel is sent
	grace *time.Timer
}

func (cc *cconn) watch(ctx context.Context) *cancelWatch {
	w := &cancelWatch{done: make(chan struct{})}
	w.stop = context.AfterFunc(ctx, func() {
		defer close(w.done)
		cc.c.SendBytes(cancelMsg)
		w.grace = time.AfterFunc(cancelGrace, func() { cc.c.Close() })
	})
	return w
}

var errMalformedReply = errors.New("malformed reply")

// broke is the error of a call whose connection failed with err:
// mp.ErrClosed once the client is closed, ctx's error once ctx has ended
// (the connection may have been given up for it), otherwise the manager
// is gone.
func (c *client) broke(ctx context.Context, err error) error {
	if c.isClosed() {
		return mp.ErrClosed
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return c.gone(err)
}

// gone wraps the error of a connection that failed. The server is gone,
// or the connection was given up: the idle connections are closed too
// (the next call dials afresh, and fails if the server is gone).
func (c *client) gone(err error) error {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	for _, cc := range idle {
		delete(c.all, cc)
	}
	c.mu.Unlock()
	for _, cc := range idle {
		cc.c.Close()
	}
	return &goneError{err}
}

// replyError makes the error of an error reply.
func (cc *cconn) replyError(ctx context.Context) error {
	code, _, _ := codec.ReadUint(cc.item(1))
	msg, _ := codec.ReadText(cc.item(2))
	ctxErr := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.Canceled
	}
	switch code {
	case codeNoObject:
		return ErrNoObject
	case codeWrongKind, codeExists:
		return fmt.Errorf("%w: %s", ErrWrongKind, trimPrefix(msg))
	case codeIndex:
		return ErrIndex
	case codeNoField:
		return fmt.Errorf("%w: %s", ErrNoField, trimPrefix(msg))
	case codeEmpty:
		return mp.ErrEmpty
	case codeFull:
		return mp.ErrFull
	case codeNotHeld:
		return mp.ErrNotHeld
	case codeTooManyReleases:
		return mp.ErrReleasedTooManyTimes
	case codeBroken:
		if t, _ := codec.ReadText(cc.item(3)); t == "cancel" {
			return fmt.Errorf("%w: %w", mp.ErrBrokenBarrier, ctxErr())
		}
		return mp.ErrBrokenBarrier
	case codeTimeout:
		return fmt.Errorf("%w: %w", mp.ErrBrokenBarrier, context.DeadlineExceeded)
	case codeCancelled:
		return ctxErr()
	case codeTaskDone:
		return mp.ErrTaskDone
	case codeTooLong:
		return fmt.Errorf("%w: %s", mp.ErrMessageTooLong, trimPrefix(msg))
	case codeOwnerDied:
		return &mp.OwnerDiedError{Pid: cc.intItem(3)}
	case codeRemote:
		stack, _ := codec.ReadText(cc.item(4))
		re := &mp.RemoteError{Process: "manager", Pid: int(cc.cl.serverPid.Load()),
			Message: msg, Panic: cc.boolItem(3), Stack: stack}
		var m remoteMatch
		if b := cc.item(5); b != nil && codec.Unmarshal(b, &m) == nil {
			re.Sentinels, re.Values = m.Sentinels, m.Values
		}
		return re
	case codeNoMethod:
		return fmt.Errorf("%w: %s", ErrUnknownMethod, trimPrefix(msg))
	case codeUnknownType:
		return fmt.Errorf("%w: %s", ErrUnknownType, trimPrefix(msg))
	case codeNotAllowed:
		return fmt.Errorf("%w: %s", ErrNotAllowed, trimPrefix(msg))
	}
	return errors.New(msg)
}

func trimPrefix(msg string) string {
	const p = "manager: "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}

// ---- proxies ----

// ref is the core of every proxy: the token of its object and the client
// it uses, found from the token's address when the proxy arrived from
// elsewhere.
type ref struct {
	tok  token
	cl   atomic.Pointer[client]
	refd atomic.Bool // the session is known to refer to the object
	kv   *kvObj      // the object in a replicated store, instead of a server's
}

var errZeroProxy = errors.New("manager: proxy not made by a manager (zero value)")

func (r *ref) init(tok token, cl *client, refd bool) {
	r.tok = tok
	r.cl.Store(cl)
	r.refd.Store(refd)
}

func (r *ref) client() *client {
	if c := r.cl.Load(); c != nil {
		return c
	}
	r.cl.CompareAndSwap(nil, clientFor(&r.tok))
	return r.cl.Load()
}

// begin starts a request on the object: it takes a connection and writes
// the head. The first request of a proxy that arrived from elsewhere also
// asks the server to record the session's reference.
func (r *ref) begin(ctx context.Context, op uint64, nargs int) (*cconn, error) {
	if r.tok.Address == "" {
		return nil, errZeroProxy
	}
	c := r.client()
	cc, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	if !r.refd.Load() {
		if r.tok.Instance != c.instance.Load() {
			c.put(cc)
			return nil, fmt.Errorf("%w: the proxy comes from an earlier run of the manager at %s", ErrNoObject, r.tok.Address)
		}
		op |= flagRef
	}
	cc.start(op, r.tok.ID, nargs)
	return cc, nil
}

// call sends op with args. On success the reply's items are in the
// connection, which the caller hands back with done once it has read
// them.
func (r *ref) call(ctx context.Context, op uint64, args ...any) (*cconn, error) {
	if r.kv != nil {
		return r.kv.call(ctx, op, args)
	}
	cc, err := r.begin(ctx, op, len(args))
	if err != nil {
		return nil, err
	}
	for _, a := range args {
		if err := cc.arg(a); err != nil {
			r.done(cc)
			return nil, err
		}
	}
	if err := cc.roundTrip(ctx); err != nil {
		// The server recorded the reference if it answered, unless to
		// say that the object is gone.
		if cc.replied && !errors.Is(err, ErrNoObject) {
			r.refd.Store(true)
		}
		r.done(cc)
		return nil, err
	}
	r.refd.Store(true)
	return cc, nil
}

// do is call for operations whose reply carries nothing to read.
func (r *ref) do(ctx context.Context, op uint64, args ...any) error {
	cc, err := r.call(ctx, op, args...)
	if err != nil {
		return err
	}
	r.done(cc)
	return nil
}

func (r *ref) done(cc *cconn) {
	if cc.cl != nil {
		cc.cl.put(cc)
	}
}

// release drops this process's reference to the object.
func (r *ref) release(ctx context.Context) error {
	if r.kv != nil {
		return nil // no references are counted (see kv.go)
	}
	if r.tok.Address == "" {
		return errZeroProxy
	}
	c := r.client()
	cc, err := c.get(ctx)
	if err != nil {
		return err
	}
	cc.start(opRelease, r.tok.ID, 0)
	err = cc.roundTrip(ctx)
	c.put(cc)
	if err == nil {
		r.refd.Store(false)
	}
	return err
}

func (r *ref) marshal() ([]byte, error) {
	if r.kv != nil {
		return nil, errKVNoMarshal
	}
	if r.tok.Address == "" {
		return nil, errZeroProxy
	}
	return appendToken(nil, &r.tok), nil
}

// unmarshal receives a token for an object of one of kinds.
func (r *ref) unmarshal(data []byte, kinds ...string) error {
	t, err := parseToken(data)
	if err == errNullToken {
		r.init(token{}, nil, false)
		return nil
	}
	if err != nil {
		return err
	}
	if len(kinds) > 0 && !contains(kinds, t.Kind) {
		return fmt.Errorf("%w: a %s proxy arrived where a %s was expected", ErrWrongKind, t.Kind, kinds[0])
	}
	r.init(t, nil, false)
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

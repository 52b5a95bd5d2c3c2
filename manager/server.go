//go:build linux

package manager

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mplog"
)

// DefaultMaxMessage caps the requests a Server accepts when
// Server.MaxMessage is zero.
const DefaultMaxMessage = 256 << 20

// Server holds shared objects and serves them to proxies: the manager
// process of Python's multiprocessing, which Start runs in a child. Run one
// in the current process with Serve, on a Listener from package
// connection (which authenticates every connection):
//
//	l, err := connection.Listen("tcp", "127.0.0.1:5000", key)
//	...
//	err = new(manager.Server).Serve(ctx, l)
//
// It serves the SyncManager types (Dict, List, Namespace, Value, Array,
// Queue, JoinableQueue, Lock, RLock, Semaphore, BoundedSemaphore,
// Condition, Event, Barrier) and the types registered with RegisterType.
// The server never decodes the values it holds: it stores them as CBOR
// and compares them as bytes, so one server serves every Go type (and the
// same binary is not needed on both sides, except for registered types).
//
// Each connection is served by its own goroutine; an operation that
// blocks (a Lock's Acquire, a Queue's Get) waits in a goroutine of its own
// so that the client can cancel it, and a client that goes away cancels
// its waits. When the last connection of a client process closes — it
// closed its Manager, or it died — the server releases what the process
// held: its Locks and RLocks (the next acquirer is told, with an
// *mp.OwnerDiedError), the units of BoundedSemaphores it acquired, and its
// references to objects. That costs in what the process held, not in the
// number of objects the server serves.
//
// A client reaches only the objects it made, named (Named), or whose
// proxies it was given: an object's id is 64 random bits, so that a token
// a client makes up names no object, now or later. The server counts each
// process's references itself, at most one per object: a release drops
// the process's reference if it holds one and nothing otherwise, and a
// value removed from an object drops only the references its storing
// took.
//
// The fields are set before the first Serve. A Server may serve several
// Listeners at once (one Serve call each), sharing its objects.
type Server struct {
	// AllowShutdown lets a Go client stop the server (Manager.Shutdown):
	// all Serve calls then return. Start's server allows it. A Python
	// client's shutdown is refused either way.
	AllowShutdown bool
	// MaxMessage caps the length of a request; 0 means
	// DefaultMaxMessage. A longer request fails with an error matching
	// mp.ErrMessageTooLong: clients learn the cap when they connect and
	// refuse such a request before sending it, and one that arrives
	// anyway is read, thrown away and answered with that error. Either
	// way the client stays connected, and keeps what it holds.
	MaxMessage int64
	// Logger, if set, is where the server reports each client process
	// whose last connection ended, instead of the logger set with
	// mp.SetLogger: a record "mp: manager client gone" with the attributes
	// pid (the client's), locks and rlocks (the Locks and RLocks it held,
	// which the next acquirers get with an *mp.OwnerDiedError),
	// semaphore_units (units of BoundedSemaphores it held, given back),
	// queue_items (items a Get of its took and it never received, put
	// back at the front of their queues) and refs (its references to
	// objects, dropped). The level is Warn when it left something held
	// (it died, or closed its Manager while holding it), Debug otherwise.
	// Failed handshakes are reported by the Listener (see
	// connection.ListenConfig.Logger).
	Logger *slog.Logger
	// Python makes the server serve CPython's manager clients too
	// (multiprocessing.managers.SyncManager and BaseManager of Python
	// 3.11 to 3.13, connected with the server's authkey), on the same
	// Listeners as Go clients: the first message of a connection tells
	// them apart. They share the objects of Go clients, named objects
	// among them; see the package documentation. Without Python, a
	// Python client is hung up on once authenticated (it raises EOFError).
	Python bool

	initOnce sync.Once
	instance uint64
	pid      int
	stopCtx  context.Context
	stop     context.CancelFunc

	mu       sync.RWMutex
	objects  map[uint64]*object
	sessions map[sessionID]*session
	ptrs     map[any]uint64 // instances of registered types, served as objects

	namesMu sync.Mutex // serialises get-or-create of named objects
	names   map[string]uint64

	waiting   atomic.Int64 // operations waiting
	pyThreads atomic.Int64 // Python connections served on threads of their own (see pyMaxThreads)
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		var b [8]byte
		rand.Read(b[:])
		s.instance = binary.LittleEndian.Uint64(b[:]) | 1
		s.pid = os.Getpid()
		s.stopCtx, s.stop = context.WithCancel(context.Background())
		s.objects = map[uint64]*object{}
		s.sessions = map[sessionID]*session{}
		s.ptrs = map[any]uint64{}
		s.names = map[string]uint64{}
	})
}

// Serve accepts connections from l and serves them until ctx is done or a
// client shuts the server down (see AllowShutdown); then it closes l and
// every connection it accepted, waits for their goroutines and returns
// nil. It returns an error if l fails.
//
// A method of a registered type that never returns keeps Serve from
// returning.
func (s *Server) Serve(ctx context.Context, l *connection.Listener) error {
	s.init()
	defer l.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stopCtx, cancel)()

	var (
		mu    sync.Mutex
		conns = map[*sconn]struct{}{}
		wg    sync.WaitGroup
		err   error
	)
	maxMsg := s.MaxMessage
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMessage
	}
	for {
		c, aerr := l.Accept(ctx)
		if aerr != nil {
			if ctx.Err() == nil && !errors.Is(aerr, mp.ErrClosed) {
				err = aerr
			}
			break
		}
		c.SetLimit(maxMsg)
		// The address a Go client reached the server by comes in its
		// hello; a Python client's tokens name the listener's.
		sc := &sconn{s: s, c: newLink(c), network: l.Addr().Network(), address: l.Addr().String()}
		sc.c.limit = maxMsg
		mu.Lock()
		conns[sc] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(sc)
			mu.Lock()
			delete(conns, sc)
			mu.Unlock()
		}()
	}
	l.Close()
	mu.Lock()
	for sc := range conns {
		sc.c.Close()
	}
	mu.Unlock()
	wg.Wait()
	return err
}

// Shutdown makes every Serve call return, as a client's shutdown request
// does.
func (s *Server) Shutdown() {
	s.init()
	s.stop()
}

// ListenAndServe listens on network and address with authkey (see
// connection.Listen) and serves the SyncManager types until ctx is done.
func ListenAndServe(ctx context.Context, network, address string, authkey []byte) error {
	l, err := connection.Listen(network, address, authkey)
	if err != nil {
		return err
	}
	return new(Server).Serve(ctx, l)
}

// Serve runs a new Server on l until ctx is done; see Server.Serve.
func Serve(ctx context.Context, l *connection.Listener) error {
	return new(Server).Serve(ctx, l)
}

// ---- objects, sessions and references ----

type sessionID [16]byte

// A session is one client process's use of the server: all the
// connections of one Manager (or of the proxies a process received).
//
// It records what it holds in objects besides references — the Locks and
// RLocks it holds, the BoundedSemaphores of which it holds units — so
// that its end gives them back at a cost in what it holds, however many
// objects the server serves. The record is a list threaded through the
// holdings themselves, so that taking and giving back a lock costs no
// allocation. What a session waits for needs no record: a wait ends with
// its connection (see serveConn), before the session can end.
type session struct {
	id    sessionID
	pid   int
	conns int                 // guarded by Server.mu
	refs  map[uint64]struct{} // objects the session refers to; Server.mu

	hmu   sync.Mutex // taken after the lock of the object that calls hold or unhold
	holds holding    // the list's head; guarded by hmu

	gave released // what its end gave back, for the log
}

// released counts what the end of a session gave back: sessionGone and
// undeliver count into it.
type released struct {
	locks, rlocks, semUnits, queueItems atomic.Int64
}

// A holder is something in which a session can hold what must be given
// back when the session ends: a Lock or RLock (a Condition's own RLock
// among them), a BoundedSemaphore.
type holder interface {
	// sessionGone gives back what sess holds in it.
	sessionGone(sess *session)
}

// A holding is an entry of a session's record: h holds something of the
// session's. It is in at most one session's list; h links and unlinks it
// with its own lock held, and the end of the session unlinks every entry
// at once.
type holding struct {
	h          holder
	prev, next *holding // nil when in no list; guarded by the session's hmu
}

// hold adds n to sess's record.
func (sess *session) hold(n *holding) {
	sess.hmu.Lock()
	head := &sess.holds
	if head.next == nil {
		head.prev, head.next = head, head
	}
	n.prev, n.next = head, head.next
	head.next.prev = n
	head.next = n
	sess.hmu.Unlock()
}

// unhold removes n from sess's record, if it is there (the session's end
// takes the whole record at once).
func (sess *session) unhold(n *holding) {
	sess.hmu.Lock()
	if n.next != nil {
		n.prev.next, n.next.prev = n.next, n.prev
		n.prev, n.next = nil, nil
	}
	sess.hmu.Unlock()
}

// takeHolds empties sess's record and returns what was in it.
func (sess *session) takeHolds() []holder {
	sess.hmu.Lock()
	defer sess.hmu.Unlock()
	var hs []holder
	head := &sess.holds
	for n := head.next; n != nil && n != head; {
		next := n.next
		hs = append(hs, n.h)
		n.prev, n.next = nil, nil
		n = next
	}
	head.prev, head.next = nil, nil
	return hs
}

// An object is a served value. It stays alive while something refers to
// it: a session, a value stored in another object (a token), or a name.
type object struct {
	id     uint64
	kind   string
	refs   int // guarded by Server.mu
	pyrefs int // the references of Python clients, counted in refs too; Server.mu
	impl   impl
}

// impl is the behaviour of one kind of object.
type impl interface {
	// handle serves one operation. It writes the reply into x.r, or
	// returns a function that waits in a goroutine of its own and writes
	// the reply then.
	handle(x *call) waitFn
	// free empties the object, which nothing refers to any more, ends its
	// waits and returns the values it held that may hold tokens, and the
	// ids of objects it referred to directly.
	free() (vals [][]byte, ids []uint64)
}

type waitFn func(p *pending, r *reply)

// gone is closed when an object is freed, ending the waits on it.
type gone struct {
	ch   chan struct{}
	once sync.Once
}

func newGone() gone                   { return gone{ch: make(chan struct{})} }
func (g *gone) close()                { g.once.Do(func() { close(g.ch) }) }
func (g *gone) done() <-chan struct{} { return g.ch }

func (s *Server) lookup(id uint64) *object {
	s.mu.RLock()
	o := s.objects[id]
	s.mu.RUnlock()
	return o
}

// add registers a new object, referred to by sess (and by name, if not
// empty: the caller holds namesMu).
func (s *Server) add(kind string, im impl, sess *session, name string) *object {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &object{id: s.newID(), kind: kind, impl: im}
	s.objects[o.id] = o
	if sess != nil {
		sess.refs[o.id] = struct{}{}
		o.refs++
	}
	if name != "" {
		s.names[name] = o.id
		o.refs++
	}
	return o
}

// newID returns the id of a new object: 64 random bits, not 0, not in
// use. An id is the only name of an object a client can give, in a
// request or in a token inside a value, so it must not be guessable: a
// client names only the objects whose proxies it was given, and a token
// it makes up names nothing, now or later (an id once freed is drawn
// again with probability 2^-64, where a counter would give the next
// object the id a forger predicted, whose reference the forger's token
// would then drop). Called with mu held.
func (s *Server) newID() uint64 {
	for {
		var b [8]byte
		rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 && s.objects[id] == nil {
			return id
		}
	}
}

// sessionRef records that sess refers to o. It reports false if o has been
// freed.
func (s *Server) sessionRef(sess *session, o *object) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[o.id] != o {
		return false
	}
	if _, ok := sess.refs[o.id]; !ok {
		sess.refs[o.id] = struct{}{}
		o.refs++
	}
	return true
}

// sessionUnref drops sess's reference to the object id.
func (s *Server) sessionUnref(sess *session, id uint64) {
	s.mu.Lock()
	_, ok := sess.refs[id]
	delete(sess.refs, id)
	s.mu.Unlock()
	if ok {
		s.decref(id)
	}
}

// incref adds a reference to each of ids that exists.
func (s *Server) incref(ids ...uint64) {
	s.mu.Lock()
	for _, id := range ids {
		if o := s.objects[id]; o != nil {
			o.refs++
		}
	}
	s.mu.Unlock()
}

// decref drops a reference to each of ids and frees the objects left
// without any, and in turn what they referred to.
func (s *Server) decref(ids ...uint64) {
	work := append([]uint64(nil), ids...)
	for len(work) > 0 {
		id := work[len(work)-1]
		work = work[:len(work)-1]
		o := s.unref(id)
		if o == nil {
			continue
		}
		vals, refs := o.impl.free()
		work = append(work, refs...)
		for _, v := range vals {
			work = s.appendTokens(work, v)
		}
	}
}

// unref drops a reference to object id, and returns the object if that was
// its last one: it is then no longer served, and is the caller's to free.
func (s *Server) unref(id uint64) *object {
	s.mu.Lock()
	defer s.mu.Unlock() // c.key below is a call: see withLock
	o := s.objects[id]
	if o == nil {
		return nil
	}
	o.refs--
	if o.refs > 0 {
		return nil
	}
	delete(s.objects, id)
	if c, ok := o.impl.(*customObj); ok {
		delete(s.ptrs, c.key())
	}
	return o
}

// appendTokens appends the ids of this server's objects named by tokens
// in v.
func (s *Server) appendTokens(ids []uint64, v []byte) []uint64 {
	if !mayHoldTokens(v) {
		return ids
	}
	walkTokens(v, func(t *token) {
		if t.Instance == s.instance {
			ids = append(ids, t.ID)
		}
	})
	return ids
}

// stored is called for a value that an object now holds: the objects its
// tokens name stay alive while it is held.
func (s *Server) stored(v []byte) {
	if mayHoldTokens(v) {
		s.incref(s.appendTokens(nil, v)...)
	}
}

// delivered is called for a value sent to sess: the objects its tokens
// name stay alive for sess, so that they survive until its proxies are
// used even if the value is removed meanwhile.
func (s *Server) delivered(sess *session, v []byte) {
	if !mayHoldTokens(v) {
		return
	}
	ids := s.appendTokens(nil, v)
	s.mu.Lock()
	for _, id := range ids {
		if o := s.objects[id]; o != nil {
			if _, ok := sess.refs[id]; !ok {
				sess.refs[id] = struct{}{}
				o.refs++
			}
		}
	}
	s.mu.Unlock()
}

// dropped is called for values an object no longer holds.
func (s *Server) dropped(vals [][]byte) {
	var ids []uint64
	for _, v := range vals {
		ids = s.appendTokens(ids, v)
	}
	if len(ids) > 0 {
		s.decref(ids...)
	}
}

func (s *Server) join(id sessionID, pid int) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		sess = &session{id: id, pid: pid, refs: map[uint64]struct{}{}}
		s.sessions[id] = sess
	}
	sess.conns++
	return sess
}

// leave ends a connection of sess; the last one ends the session, and
// what it held is given back: what it holds in objects (its record, see
// session), then its references. Its cost is in what the session held,
// not in the number of objects the server serves. Every connection of the
// session has ended, and with it every wait of the session (serveConn
// waits for them), so nothing is granted to the session after its record
// is taken.
func (s *Server) leave(sess *session) {
	s.mu.Lock()
	sess.conns--
	if sess.conns > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.sessions, sess.id)
	refs := make([]uint64, 0, len(sess.refs))
	for id := range sess.refs {
		refs = append(refs, id)
	}
	sess.refs = map[uint64]struct{}{}
	s.mu.Unlock()
	for _, h := range sess.takeHolds() {
		h.sessionGone(sess)
	}
	s.decref(refs...)
	s.logGone(sess, len(refs))
}

// logGone reports the end of sess and what it gave back (see
// Server.Logger).
func (s *Server) logGone(sess *session, refs int) {
	g := &sess.gave
	locks, rlocks, units, items := g.locks.Load(), g.rlocks.Load(), g.semUnits.Load(), g.queueItems.Load()
	level := slog.LevelDebug
	if locks+rlocks+units+items > 0 {
		level = slog.LevelWarn
	}
	mplog.Or(s.Logger).LogAttrs(context.Background(), level, "mp: manager client gone",
		slog.Int("pid", sess.pid), slog.Int64("locks", locks), slog.Int64("rlocks", rlocks),
		slog.Int64("semaphore_units", units), slog.Int64("queue_items", items), slog.Int("refs", refs))
}

// counts returns the number of live objects and sessions.
func (s *Server) counts() (int, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.objects), len(s.sessions)
}

// ---- connections ----

// sconn is the server's side of one connection.
type sconn struct {
	s        *Server
	c        *link
	sess     *session
	network  string // how the client reached the server, for the tokens
	address  string // made here
	rbuf     []byte
	args     [][]byte
	r        reply
	x        call
	pmu      sync.Mutex
	pend     *pending
	unacked  delivery       // guarded by pmu
	wg       sync.WaitGroup // waiting operations
	shutdown bool
}

// pending is a waiting operation of a connection.
type pending struct {
	cancel     chan struct{} // closed by a cancel request or the end of the connection
	dead       chan struct{} // closed at the end of the connection
	cancelOnce sync.Once
	deadOnce   sync.Once
}

func (p *pending) cancelled() { p.cancelOnce.Do(func() { close(p.cancel) }) }
func (p *pending) died() {
	p.cancelled()
	p.deadOnce.Do(func() { close(p.dead) })
}

func (p *pending) isDead() bool { return ended(p.dead) }

func (c *sconn) recv() ([]byte, error) {
	if c.rbuf == nil {
		c.rbuf = make([]byte, 4<<10)
	}
	n, err := c.c.RecvBytesInto(c.rbuf, 0)
	if err == nil {
		return c.rbuf[:n], nil
	}
	var short *mp.BufferTooShortError
	if errors.As(err, &short) {
		if len(short.Message) <= 1<<20 {
			c.rbuf = make([]byte, max(2*len(c.rbuf), len(short.Message)))
		}
		return short.Message, nil
	}
	return nil, err
}

// pending returns the operation of the connection that waits, if any.
func (c *sconn) pending() *pending {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.pend
}

// idle reports whether no operation of the connection waits: a reply
// now would not answer it.
func (c *sconn) idle() bool { return c.pending() == nil }

func (c *sconn) send(r *reply) {
	c.c.SendBytes(r.bytes())
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
}

func (s *Server) serveConn(c *sconn) {
	defer c.c.Close()
	first, err := c.recv()
	if err != nil {
		return
	}
	if s.Python && isPickle(first) {
		c.servePython(first)
		return
	}
	if !c.hello(first) {
		return
	}
	for {
		msg, err := c.recv()
		if errors.Is(err, mp.ErrMessageTooLong) && c.idle() {
			// Read and thrown away by the connection: refuse the request
			// and go on (a client checks first, see link.maxSend). Like
			// any request after a reply, it acknowledges a Get's item.
			c.acked()
			c.r.fail(codeTooLong, fmt.Sprintf("manager: %v", err))
			c.send(&c.r)
			continue
		}
		if err != nil {
			break
		}
		c.args, err = codec.SplitMessage(c.args[:0], msg)
		if err != nil || len(c.args) < 2 {
			break // not our protocol: hang up
		}
		op, _, err1 := codec.ReadUint(c.args[0])
		id, _, err2 := codec.ReadUint(c.args[1])
		if err1 != nil || err2 != nil {
			break
		}
		p := c.pending()
		if op == opCancel {
			if p != nil {
				p.cancelled()
			}
			continue
		}
		if p != nil {
			break // a request while one is in flight
		}
		c.acked() // an ack, or a request after the reply, acknowledges it
		if op == opAck {
			continue
		}
		c.serve(op, id, c.args[2:])
		if c.shutdown {
			s.stop()
		}
	}
	c.finish()
}

// finish ends a connection whose requests have ended: it ends its wait,
// if any, waits for it, puts back an item it did not acknowledge and
// leaves its session.
func (c *sconn) finish() {
	c.pmu.Lock()
	if c.pend != nil {
		c.pend.died()
	}
	c.pmu.Unlock()
	c.wg.Wait()
	c.undeliver()
	c.s.leave(c.sess)
}

// upgrade answers opUpgrade: it agrees, receives the client's shared
// memory and moves the connection onto rings in it.
func (c *sconn) upgrade() {
	r := &c.r
	if c.c.ring.Load() != nil {
		r.fail(codeProtocol, "manager: connection already upgraded")
		c.send(r)
		return
	}
	r.ok()
	c.send(r)
	var mem *mp.RawArray[uint64]
	if err := c.c.sock.Recv(&mem); err != nil || mem == nil {
		c.c.Close() // the client now speaks through memory we do not have
		return
	}
	if err := c.c.useRing(mem, false); err != nil {
		mem.Close()
		c.c.Close()
	}
}

// hello reads the first request of a connection, msg, which names its
// session.
func (c *sconn) hello(msg []byte) bool {
	var items [8][]byte
	args, err := codec.SplitMessage(items[:0], msg)
	if err != nil || len(args) != 7 {
		return false
	}
	op, _, err := codec.ReadUint(args[0])
	if err != nil || op != opHello {
		return false
	}
	sid, err := codec.ReadBytes(args[2])
	if err != nil || len(sid) != len(sessionID{}) {
		return false
	}
	pid, _, err := codec.ReadUint(args[3])
	if err != nil {
		return false
	}
	version, _, err := codec.ReadUint(args[4])
	if err != nil {
		return false
	}
	if c.network, err = codec.ReadText(args[5]); err != nil {
		return false
	}
	if c.address, err = codec.ReadText(args[6]); err != nil {
		return false
	}
	r := &c.r
	r.s = c.s
	if version != protocolVersion {
		r.fail(codeProtocol, fmt.Sprintf("manager: protocol version %d, server speaks %d", version, protocolVersion))
		c.send(r)
		return false
	}
	c.sess = c.s.join(sessionID(sid), int(pid))
	r.sess = c.sess
	r.ok()
	r.uint(c.s.instance)
	r.uint(uint64(c.s.pid))
	r.uint(uint64(c.c.limit)) // the longest request, which clients check before sending
	c.send(r)
	return true
}

// A call is one request being served.
type call struct {
	s    *Server
	c    *sconn
	sess *session
	obj  *object
	op   uint64
	args [][]byte
	r    *reply
}

// need checks the number of arguments.
func (x *call) need(n int) bool {
	if len(x.args) != n {
		x.r.fail(codeProtocol, fmt.Sprintf("manager: operation %d takes %d arguments, not %d", x.op, n, len(x.args)))
		return false
	}
	return true
}

func (x *call) badOp() {
	x.r.fail(codeWrongKind, fmt.Sprintf("manager: a %s has no operation %d", x.obj.kind, x.op))
}

func (x *call) int(i int) (int64, bool) {
	v, err := codec.ReadInt(x.args[i])
	if err != nil {
		x.r.fail(codeProtocol, fmt.Sprintf("manager: argument %d is not an integer", i))
		return 0, false
	}
	return v, true
}

// serve answers one request, or starts the wait of a blocking one.
func (c *sconn) serve(op, id uint64, args [][]byte) {
	s := c.s
	r := &c.r
	r.s, r.sess = s, c.sess
	r.reset()
	ref := op&flagRef != 0
	op &^= flagRef
	x := &c.x
	*x = call{s: s, c: c, sess: c.sess, op: op, args: args, r: r}
	var wait waitFn
	switch op {
	case opCreate:
		s.create(x)
	case opRelease:
		s.sessionUnref(c.sess, id)
		r.ok()
	case opShutdown:
		if s.AllowShutdown {
			c.shutdown = true
			r.ok()
		} else {
			r.fail(codeNotAllowed, "manager: this server does not allow clients to shut it down")
		}
	case opUpgrade:
		c.upgrade()
		return
	case opPing:
		objs, sessions := s.counts()
		r.ok()
		r.uint(uint64(objs))
		r.uint(uint64(sessions))
		r.uint(uint64(s.waiting.Load()))
	default:
		o := s.lookup(id)
		if o == nil || (ref && !s.sessionRef(c.sess, o)) {
			r.fail(codeNoObject, fmt.Sprintf("manager: no object %d (released)", id))
			break
		}
		x.obj = o
		wait = o.impl.handle(x)
	}
	*x = call{}
	if wait == nil {
		c.send(r)
		c.flushDrops(r)
		return
	}
	c.waitAside(wait, noTimeout, func(r *reply) {
		c.send(r)
		c.flushDrops(r)
	})
}

// waitAside runs wait, an operation that waits, in a goroutine of its
// own, for at most timeout (noTimeout: without limit; a wait ended by its
// timeout fails with codeCancelled), while the connection's goroutine
// reads on: the end of the connection, or a cancel the client sends, ends
// the wait through c.pend. done then replies with the wait's reply.
func (c *sconn) waitAside(wait waitFn, timeout time.Duration, done func(r *reply)) {
	s := c.s
	p := &pending{cancel: make(chan struct{}), dead: make(chan struct{})}
	c.pmu.Lock()
	c.pend = p
	c.pmu.Unlock()
	var timer *time.Timer
	if timeout >= 0 {
		timer = time.AfterFunc(timeout, p.cancelled)
	}
	c.wg.Add(1)
	s.waiting.Add(1)
	go func() {
		defer c.wg.Done()
		defer s.waiting.Add(-1)
		r := &reply{s: s, sess: c.sess}
		r.reset()
		wait(p, r)
		if timer != nil {
			timer.Stop()
		}
		c.pmu.Lock()
		c.pend = nil
		c.pmu.Unlock()
		done(r)
	}()
}

func (c *sconn) flushDrops(r *reply) {
	if len(r.drops) > 0 {
		c.s.dropped(r.drops)
		clear(r.drops)
		r.drops = r.drops[:0]
	}
}

// ---- replies ----

const headroom = 9 // room for the reply's array head

// A reply is built after headroom bytes; bytes puts the head in front.
type reply struct {
	buf   []byte
	n     uint64 // top-level items
	s     *Server
	sess  *session
	drops [][]byte // values removed from objects, to drop once replied
}

func (r *reply) reset() {
	if r.buf == nil {
		r.buf = make([]byte, headroom, 256)
	}
	r.buf = r.buf[:headroom]
	r.n = 0
}

func (r *reply) ok() {
	r.reset()
	r.buf = append(r.buf, statusOK)
	r.n = 1
}

func (r *reply) fail(code uint64, msg string, extra ...any) {
	r.reset()
	r.buf = append(r.buf, statusErr)
	r.buf = codec.AppendUint(r.buf, code)
	r.buf = codec.AppendText(r.buf, msg)
	r.n = 3
	for _, e := range extra {
		switch e := e.(type) {
		case int:
			r.buf = codec.AppendInt(r.buf, int64(e))
		case bool:
			r.buf = codec.AppendBool(r.buf, e)
		case string:
			r.buf = codec.AppendText(r.buf, e)
		case cborItem:
			r.buf = append(r.buf, e...)
		}
		r.n++
	}
}

func (r *reply) uint(v uint64) { r.buf = codec.AppendUint(r.buf, v); r.n++ }
func (r *reply) int(v int)     { r.buf = codec.AppendInt(r.buf, int64(v)); r.n++ }
func (r *reply) bool(v bool)   { r.buf = codec.AppendBool(r.buf, v); r.n++ }
func (r *reply) null()         { r.buf = append(r.buf, codec.Null); r.n++ }
func (r *reply) text(s string) { r.buf = codec.AppendText(r.buf, s); r.n++ }

// value appends a stored value as an item.
func (r *reply) value(v []byte) {
	r.elem(v)
	r.n++
}

// array starts an item that is an array of n elements.
func (r *reply) array(n int) {
	r.buf = codec.AppendHead(r.buf, 4, uint64(n))
	r.n++
}

// elem appends a stored value as an element of an array item.
func (r *reply) elem(v []byte) {
	r.buf = append(r.buf, v...)
	r.s.delivered(r.sess, v)
}

// drop records a value removed from an object; its tokens' references are
// dropped once the reply is sent (never under an object's lock).
func (r *reply) drop(v []byte) {
	if mayHoldTokens(v) {
		r.drops = append(r.drops, v)
	}
}

func (r *reply) bytes() []byte {
	var h [headroom]byte
	hb := codec.AppendHead(h[:0], 4, r.n)
	start := headroom - len(hb)
	copy(r.buf[start:], hb)
	return r.buf[start:]
}

// ---- waiting ----

// A waiter is a blocked operation in an object's queue. granted and the
// fields after it are written under the object's lock before ch is
// signalled.
type waiter struct {
	ch        chan struct{}
	since     time.Time // when it began to wait
	sess      *session
	gid       uint64
	depth     int
	item      []byte
	granted   bool
	ownerDied int
}

func newWaiter(sess *session) *waiter {
	return &waiter{ch: make(chan struct{}, 1), sess: sess, since: time.Now()}
}

func (w *waiter) grant() {
	w.granted = true
	w.nudge()
}

// wait blocks until w is woken, stop is closed or the object is gone.
func (w *waiter) wait(stop <-chan struct{}, g *gone) {
	select {
	case <-w.ch:
	case <-stop:
	case <-g.done():
	}
}

// awaitSignal is the wait of w, queued in *ws under mu, for a signal that
// needs no more than an OK (an Event set, a JoinableQueue done): once
// granted it answers OK; otherwise w leaves the queue and endWait answers.
func awaitSignal(w *waiter, mu *sync.Mutex, ws *[]*waiter, g *gone) waitFn {
	return func(p *pending, r *reply) {
		w.wait(p.cancel, g)
		mu.Lock()
		defer mu.Unlock()
		if w.granted {
			r.ok()
			return
		}
		*ws = removeWaiter(*ws, w)
		endWait(r, g)
	}
}

// endWait answers a wait that ended without being granted: the object was
// freed meanwhile, or the wait was cancelled.
func endWait(r *reply, g *gone) {
	if g.isClosed() {
		noObject(r)
	} else {
		cancelled(r)
	}
}

// nudge wakes w (once: a wake-up not yet seen is enough).
func (w *waiter) nudge() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// withLock runs f with mu held, and releases mu in a defer: a panic in f
// (a bug a request found, which sconn.guard recovers from for a Python
// request) does not leave mu locked, and the other users of what it
// guards are served on.
func withLock(mu *sync.Mutex, f func()) {
	mu.Lock()
	defer mu.Unlock()
	f()
}

// ended reports whether ch is closed.
func ended(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// removeWaiter deletes w from ws, keeping the order.
func removeWaiter(ws []*waiter, w *waiter) []*waiter {
	for i, x := range ws {
		if x == w {
			copy(ws[i:], ws[i+1:])
			ws[len(ws)-1] = nil
			return ws[:len(ws)-1]
		}
	}
	return ws
}

func popWaiter(ws []*waiter) (*waiter, []*waiter) {
	w := ws[0]
	copy(ws, ws[1:])
	ws[len(ws)-1] = nil
	return w, ws[:len(ws)-1]
}

// noObject is the reply to a wait on an object freed meanwhile.
func noObject(r *reply) { r.fail(codeNoObject, "manager: object released while waiting") }

func cancelled(r *reply) { r.fail(codeCancelled, "manager: wait cancelled") }

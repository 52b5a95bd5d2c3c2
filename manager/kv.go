//go:build linux

package manager

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/codec"
	"github.com/go-mp/mp/internal/mgrkv"
)

// The objects of a Manager on a replicated store: see "Objects in a
// replicated store" in the package documentation (doc.go).

// ErrLeaseLost is returned by Release of a Lock of a replicated store
// ("nats") whose holder did not renew its lease in time (it was paused,
// or cut off from the store): the lease ran out, and another process may
// have taken the lock in the meantime. What the lock protected may have
// been changed by that other holder: see Lock.Token.
var ErrLeaseLost = errors.New("manager: lock lease lost (its holder was paused or cut off past its lease)")

// ErrCorrupt is returned by a call on an object of a replicated store
// ("nats") whose state in the store no proxy could have written: a key
// whose value does not parse, or says what cannot be (a negative
// semaphore, a barrier of no parties, a list whose length disagrees with
// its items, a Dict's key that is no encoded name), written by another
// program with access to the store. The object stays as it is: the calls
// that read what is wrong return ErrCorrupt until it is written anew (a
// Dict's Clear, for one); other calls and other objects are not
// affected.
var ErrCorrupt = errors.New("manager: malformed object in the replicated store")

// ErrNoBackend is returned by Connect for a network that is neither one
// of the manager server's ("unix", "tcp"...) nor one whose store was
// registered: "nats" needs the program to import
// github.com/go-mp/mp/cluster.
var ErrNoBackend = errors.New("manager: no such backend")

// DefaultLease is the lease of a Lock of a replicated store when Lease is
// not given.
const DefaultLease = 5 * time.Second

// Lease sets the lease of a Lock of a replicated store ("nats"): how long
// the lock stays held after its holder stops renewing it (see Lock). At
// least a second (the store refuses shorter ones). It is ignored by a
// manager server, whose locks are given back when their holder's
// connection ends.
func Lease(d time.Duration) Option { return func(o *createOpts) { o.lease = d } }

// Timings of the replicated objects: waiters look again every pollEvery
// (a wake-up may be missed: a lease's expiry sends none), and single
// writes made for a call whose ctx has ended are bounded by cancelGrace.
const pollEvery = 200 * time.Millisecond

// kvStore is a Manager's connection to a replicated store.
type kvStore struct {
	st      mgrkv.Store
	network string
	address string

	mu      sync.Mutex
	closed  bool
	renewed map[*kvObj]struct{} // the locks held, whose leases are renewed
}

// close stops renewing the leases of the locks held (which the next
// acquirer takes once they run out, as from a holder that died) and
// closes the store.
func (s *kvStore) close() error {
	s.mu.Lock()
	s.closed = true
	held := s.renewed
	s.renewed = nil
	s.mu.Unlock()
	for x := range held {
		x.lk.mu.Lock()
		stop, done := x.lk.stop, x.lk.done
		x.lk.stop = nil
		x.lk.mu.Unlock()
		if stop != nil {
			close(stop)
			<-done
		}
	}
	return s.st.Close()
}

// openKV opens the store of a registered network.
func openKV(ctx context.Context, d mgrkv.Driver, network, address string, key []byte) (*Manager, error) {
	st, err := d.Open(ctx, address, key)
	if err != nil {
		return nil, err
	}
	return &Manager{kv: &kvStore{st: st, network: network, address: address}}, nil
}

var b64 = base64.RawURLEncoding

// kvName encodes a name (or an encoded dict key) for the store's keys:
// any bytes become letters, digits, - and _.
func kvName(s []byte) string { return b64.EncodeToString(s) }

// kvObj is the state of a proxy of an object in a replicated store.
type kvObj struct {
	s    *kvStore
	kind string
	name string // encoded
	key  string // the object's key (Value, Lock) or prefix ("d.NAME.")
	aux  string // a JoinableQueue's count of unfinished items

	lease time.Duration
	lk    kvLock // a Lock's state

	// A Value's last entry read or written by this proxy, with which
	// CompareAndSwap first tries its write (one round trip where reading
	// first would take two).
	cmu     sync.Mutex
	lastVal []byte
	lastRev uint64
}

func (x *kvObj) remember(v []byte, rev uint64) {
	x.cmu.Lock()
	x.lastVal, x.lastRev = v, rev
	x.cmu.Unlock()
}

func (x *kvObj) remembered() ([]byte, uint64) {
	x.cmu.Lock()
	defer x.cmu.Unlock()
	return x.lastVal, x.lastRev
}

// openKVObj makes the object of a new proxy (or finds the one named).
func (s *kvStore) open(ctx context.Context, kind string, o *createOpts, args []any) (*kvObj, error) {
	name := o.name
	if name == "" {
		var b [12]byte
		rand.Read(b[:])
		name = "anon-" + hex.EncodeToString(b[:])
	}
	x := &kvObj{s: s, kind: kind, name: kvName([]byte(name)), lease: o.lease}
	switch kind {
	case kindDict:
		x.key = "d." + x.name + "."
	case kindValue:
		x.key = "v." + x.name
		v, err := encodeArg(args[0])
		if err != nil {
			return nil, err
		}
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		if _, _, err := s.st.Create(wctx, x.key, v, 0); err != nil && !errors.Is(err, mgrkv.ErrExists) {
			return nil, err
		}
	case kindLock, kindRLock:
		x.key = "l." + x.name
		if kind == kindRLock {
			x.key = "r." + x.name
		}
		if x.lease == 0 {
			x.lease = DefaultLease
		}
		if x.lease < time.Second {
			return nil, fmt.Errorf("manager: lease %v under a second", x.lease)
		}
	case kindQueue:
		if n, _ := args[0].(int); n > 0 {
			return nil, fmt.Errorf("%w: a bounded queue on %s", ErrUnknownType, s.network)
		}
		x.key = x.name
	default:
		if ok, err := x.openMore(ctx, args); !ok {
			return nil, fmt.Errorf("%w: %s on %s", ErrUnknownType, kind, s.network)
		} else if err != nil {
			return nil, err
		}
	}
	return x, nil
}

// writeCtx bounds a single write made for a call: a call whose ctx has
// already ended still makes its non-waiting attempt (see the package
// documentation on blocking calls), within cancelGrace.
func writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
}

// encodeArg encodes a proxy's argument as the server protocol does.
func encodeArg(v any) ([]byte, error) {
	var cc cconn
	if err := cc.arg(v); err != nil {
		return nil, err
	}
	return cc.wb.Bytes(), nil
}

var okItem = codec.AppendUint(nil, statusOK)

// kvReply makes the cconn that a proxy reads a store's answer from, as it
// reads a server's reply (items[0] is the status).
func kvReply(items ...[]byte) *cconn {
	return &cconn{items: append([][]byte{okItem}, items...), replied: true}
}

func kvBool(b bool) []byte { return codec.AppendBool(nil, b) }

func kvInt(n int) []byte { return codec.AppendInt(nil, int64(n)) }

// arrayItem makes a CBOR array of encoded items.
func arrayItem(items [][]byte) []byte {
	n := 0
	for _, it := range items {
		n += len(it)
	}
	b := codec.AppendHead(make([]byte, 0, 9+n), 4, uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

// call does op on the object, as a server would, and returns its reply.
func (x *kvObj) call(ctx context.Context, op uint64, args []any) (*cconn, error) {
	enc := make([][]byte, len(args))
	for i, a := range args {
		b, err := encodeArg(a)
		if err != nil {
			return nil, err
		}
		enc[i] = b
	}
	switch x.kind {
	case kindDict:
		return x.dictCall(ctx, op, enc)
	case kindValue:
		return x.valueCall(ctx, op, enc)
	case kindLock, kindRLock:
		return x.lockCall(ctx, op, enc)
	case kindQueue:
		return x.queueCall(ctx, op, enc)
	}
	return x.moreCall(ctx, op, enc)
}

func errMethod(kind string, op uint64) error {
	return fmt.Errorf("%w: operation %d on a %s of a replicated store", ErrUnknownMethod, op, kind)
}

// ---- Dict ----

func (x *kvObj) dictCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	st := x.s.st
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	switch op {
	case opDictGet, opDictContains:
		e, err := st.Get(wctx, x.key+kvName(a[0]))
		if err != nil {
			return nil, err
		}
		if e.Op != mgrkv.OpPut {
			return kvReply(kvBool(false)), nil
		}
		return kvReply(kvBool(true), e.Value), nil
	case opDictSet:
		_, err := st.Put(wctx, x.key+kvName(a[0]), a[1])
		return kvReply(), err
	case opDictDelete, opDictPop:
		v, ok, err := x.take(wctx, x.key+kvName(a[0]))
		if err != nil || !ok {
			return kvReply(kvBool(false)), err
		}
		return kvReply(kvBool(true), v), nil
	case opDictSetDefault:
		k := x.key + kvName(a[0])
		var cont mgrkv.Contention
		for {
			if _, _, err := st.Create(wctx, k, a[1], 0); err == nil {
				return kvReply(a[1]), nil
			} else if !errors.Is(err, mgrkv.ErrExists) {
				return nil, err
			}
			e, err := st.Get(wctx, k)
			if err != nil {
				return nil, err
			}
			if e.Op == mgrkv.OpPut {
				return kvReply(e.Value), nil
			}
			// Deleted in between: try again.
			if err := cont.Lost(wctx); err != nil {
				return nil, err
			}
		}
	case opDictLen:
		keys, _, err := x.names(wctx)
		return kvReply(kvInt(len(keys))), err
	case opDictKeys, opDictValues, opDictItems:
		keys, vals, err := x.items(wctx)
		if err != nil {
			return nil, err
		}
		switch op {
		case opDictKeys:
			return kvReply(arrayItem(keys)), nil
		case opDictValues:
			return kvReply(arrayItem(vals)), nil
		}
		pairs := make([][]byte, len(keys))
		for i := range keys {
			pairs[i] = arrayItem([][]byte{keys[i], vals[i]})
		}
		return kvReply(arrayItem(pairs)), nil
	case opDictPopItem:
		keys, kbs, err := x.names(wctx)
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			v, ok, err := x.take(wctx, k)
			if err != nil {
				return nil, err
			}
			if ok {
				return kvReply(kvBool(true), kbs[i], v), nil
			}
		}
		return kvReply(kvBool(false)), nil
	case opDictUpdate:
		pairs, _, err := codec.SplitArray(nil, a[0])
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			kv, _, err := codec.SplitArray(nil, p)
			if err != nil || len(kv) != 2 {
				return nil, errors.New("manager: malformed item")
			}
			if _, err := st.Put(wctx, x.key+kvName(kv[0]), kv[1]); err != nil {
				return nil, err
			}
		}
		return kvReply(), nil
	case opDictClear:
		keys, err := st.Keys(wctx, x.key)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if err := st.Delete(wctx, k, 0); err != nil {
				return nil, err
			}
		}
		return kvReply(), nil
	}
	return nil, errMethod(x.kind, op)
}

// take deletes key if it is set and returns the value it had, atomically
// (a delete checked against the revision read, retried: see
// mgrkv.Contention).
func (x *kvObj) take(ctx context.Context, key string) ([]byte, bool, error) {
	var cont mgrkv.Contention
	for {
		e, err := x.s.st.Get(ctx, key)
		if err != nil || e.Op != mgrkv.OpPut {
			return nil, false, err
		}
		err = x.s.st.Delete(ctx, key, e.Revision)
		if err == nil {
			return e.Value, true, nil
		}
		if !errors.Is(err, mgrkv.ErrRevision) {
			return nil, false, err
		}
		if err := cont.Lost(ctx); err != nil {
			return nil, false, err
		}
	}
}

// items returns the dict's keys (decoded from the store's) and values,
// read key by key.
func (x *kvObj) items(ctx context.Context) (keys, vals [][]byte, err error) {
	names, kbs, err := x.names(ctx)
	if err != nil {
		return nil, nil, err
	}
	for i, k := range names {
		e, err := x.s.st.Get(ctx, k)
		if err != nil {
			return nil, nil, err
		}
		if e.Op != mgrkv.OpPut {
			continue // deleted since listed
		}
		keys, vals = append(keys, kbs[i]), append(vals, e.Value)
	}
	return keys, vals, nil
}

// names lists the store's keys under the object's prefix (a Dict's, a
// Namespace's) and decodes the name each ends with; ErrCorrupt for a key
// that no proxy could have written (Clear deletes it).
func (x *kvObj) names(ctx context.Context) (keys []string, names [][]byte, err error) {
	keys, err = x.s.st.Keys(ctx, x.key)
	if err != nil {
		return nil, nil, err
	}
	names = make([][]byte, len(keys))
	for i, k := range keys {
		rest, ok := strings.CutPrefix(k, x.key)
		if ok {
			names[i], err = b64.DecodeString(rest)
		}
		if !ok || err != nil || kvName(names[i]) != rest {
			return nil, nil, fmt.Errorf("%w: key %q", ErrCorrupt, k)
		}
	}
	return keys, names, nil
}

// ---- Value ----

func (x *kvObj) valueCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	st := x.s.st
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	switch op {
	case opValueGet:
		e, err := x.valueEntry(wctx)
		if err != nil {
			return nil, err
		}
		return kvReply(e.Value), nil
	case opValueSet:
		rev, err := st.Put(wctx, x.key, a[0])
		if err == nil {
			x.remember(a[0], rev)
		}
		return kvReply(), err
	case opValueSwap, opValueCAS:
		newV := a[0]
		if op == opValueCAS {
			newV = a[1]
		}
		// The value last seen, if it is old, is tried first; then the
		// value read, until no other writer came in between (see
		// mgrkv.Contention: a first try with the value last seen that
		// fails is not a round lost).
		v, rev := x.remembered()
		if op == opValueCAS && (rev == 0 || string(v) != string(a[0])) {
			rev = 0
		}
		var cont mgrkv.Contention
		for {
			read := rev == 0
			if read {
				e, err := x.valueEntry(wctx)
				if err != nil {
					return nil, err
				}
				if op == opValueCAS && string(e.Value) != string(a[0]) {
					return kvReply(kvBool(false)), nil
				}
				v, rev = e.Value, e.Revision
			}
			nrev, err := st.Update(wctx, x.key, newV, rev, 0)
			if err == nil {
				x.remember(newV, nrev)
				if op == opValueCAS {
					return kvReply(kvBool(true)), nil
				}
				return kvReply(v), nil
			}
			if !errors.Is(err, mgrkv.ErrRevision) {
				return nil, err
			}
			if read {
				if err := cont.Lost(wctx); err != nil {
					return nil, err
				}
			}
			rev = 0 // another writer came in between: read again
		}
	}
	return nil, errMethod(x.kind, op)
}

// valueEntry reads a Value's entry, and remembers it.
func (x *kvObj) valueEntry(ctx context.Context) (mgrkv.Entry, error) {
	e, err := x.s.st.Get(ctx, x.key)
	if err != nil {
		return e, err
	}
	if e.Op != mgrkv.OpPut {
		return e, ErrNoObject
	}
	x.remember(e.Value, e.Revision)
	return e, nil
}

// ---- Lock ----

// kvLock is a Lock proxy's hold on its key.
type kvLock struct {
	mu    sync.Mutex
	owner string // this acquisition's id, in the key's value
	rev   uint64 // the key's revision we last wrote; 0: not held
	token uint64 // the revision that created the key: the fencing token
	lost  bool   // a renewal found the key not ours
	stop  chan struct{}
	done  chan struct{}
	seen  int    // the pid in the last holder's entry seen by a waiter
	gid   uint64 // an RLock's holding goroutine (0 for a Lock)
	count int    // how many times it acquired the RLock
}

// lockHolder is the value of a Lock's key.
type lockHolder struct {
	_     struct{} `cbor:",toarray"`
	Owner string
	Pid   int
	Host  string
}

var hostname = sync.OnceValue(func() string { h, _ := os.Hostname(); return h })

func (x *kvObj) lockCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	var gid uint64
	if len(a) > 0 {
		gid, _, _ = codec.ReadUint(a[0])
	}
	switch op {
	case opLockAcquire:
		_, err := x.acquire(ctx, gid, true)
		return kvReply(), err
	case opLockTryAcquire:
		ok, err := x.acquire(ctx, gid, false)
		if err != nil {
			return nil, err
		}
		return kvReply(kvBool(ok)), nil
	case opLockRelease:
		return kvReply(), x.release(ctx, gid)
	case opLockHeld:
		l := &x.lk
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.rev == 0 || l.gid != gid {
			return kvReply(kvBool(false), kvInt(0)), nil
		}
		return kvReply(kvBool(true), kvInt(l.count)), nil
	case opLockLocked:
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		e, err := x.s.st.Get(wctx, x.key)
		if err != nil {
			return nil, err
		}
		return kvReply(kvBool(e.Op == mgrkv.OpPut)), nil
	}
	return nil, errMethod(x.kind, op)
}

// acquire takes the lock, waiting for it if wait is set. It returns
// whether it took it, and an *mp.OwnerDiedError if it took it over from a
// holder whose lease ran out. Errors of the store while waiting (a
// leader's failover) are retried until ctx ends.
func (x *kvObj) acquire(ctx context.Context, gid uint64, wait bool) (bool, error) {
	l := &x.lk
	l.mu.Lock()
	held := l.rev != 0
	if held && x.kind == kindRLock && l.gid == gid {
		l.count++ // the holder of an RLock acquires it again
		l.mu.Unlock()
		return true, nil
	}
	l.mu.Unlock()
	if held && !wait {
		// Held by this proxy (a Lock is not re-entrant): waiting is
		// waiting as any other would.
		return false, nil
	}
	var idb [12]byte
	rand.Read(idb[:])
	owner := hex.EncodeToString(idb[:])
	val, err := codec.DetMarshal(lockHolder{Owner: owner, Pid: os.Getpid(), Host: hostname()})
	if err != nil {
		return false, err
	}
	st := x.s.st
	var rev uint64
	var prev mgrkv.Op
	took, err := x.waitKey(ctx, x.key, wait, func(wctx context.Context) (bool, error) {
		r, p, err := st.Create(wctx, x.key, val, x.lease)
		if err != nil {
			// Set by another, or our own write whose answer was lost.
			e, gerr := st.Get(wctx, x.key)
			var h lockHolder
			if gerr == nil && e.Op == mgrkv.OpPut && codec.Unmarshal(e.Value, &h) == nil {
				if h.Owner == owner {
					r, p, err = e.Revision, mgrkv.OpNone, nil
				} else {
					l.mu.Lock()
					l.seen = h.Pid
					l.mu.Unlock()
				}
			}
		}
		if errors.Is(err, mgrkv.ErrExists) {
			return false, nil
		}
		rev, prev = r, p
		return err == nil, err
	})
	if !took {
		return false, err
	}
	x.hold(owner, val, rev, gid)
	if prev == mgrkv.OpExpired {
		l.mu.Lock()
		pid := l.seen
		l.mu.Unlock()
		return true, &mp.OwnerDiedError{Pid: pid}
	}
	return true, nil
}

// waitKey calls try until it reports done, or once if wait is false. In
// between it waits for a write to key (or pollEvery: a wake-up may be
// missed) or the end of ctx. The errors of try are retried while it waits
// (a failover of the store), and returned once ctx ends, except
// ErrNoObject and ErrCorrupt, returned at once: the object's key was
// deleted, or written with what no proxy writes, by another program, and
// nothing but another such write would end the wait.
func (x *kvObj) waitKey(ctx context.Context, key string, wait bool, try func(ctx context.Context) (bool, error)) (bool, error) {
	var wake <-chan struct{}
	watching := false
	for {
		wctx, cancel := writeCtx(ctx)
		done, err := try(wctx)
		cancel()
		if done {
			return true, nil
		}
		if !wait || errors.Is(err, ErrNoObject) || errors.Is(err, ErrCorrupt) {
			return false, err
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if !watching {
			// Watch from now on, and look once more: a write between
			// the first look and the watch would go unnoticed.
			watching = true
			if ch, stop, werr := x.s.st.Watch(key); werr == nil {
				defer stop()
				wake = ch
				continue
			}
		}
		t := time.NewTimer(pollEvery)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// hold records an acquisition and starts renewing its lease.
func (x *kvObj) hold(owner string, val []byte, rev, gid uint64) {
	l := &x.lk
	l.mu.Lock()
	l.owner, l.rev, l.token, l.lost, l.gid, l.count = owner, rev, rev, false, gid, 1
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	stop, done := l.stop, l.done
	l.mu.Unlock()
	s := x.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(done) // the Manager is closed: nothing renews the lease
		return
	}
	if s.renewed == nil {
		s.renewed = map[*kvObj]struct{}{}
	}
	s.renewed[x] = struct{}{}
	s.mu.Unlock()
	go x.renew(val, stop, done)
}

// renew renews the lease every third of it until stop is closed, or until
// it finds the key not ours (lost: another took it after the lease ran
// out).
func (x *kvObj) renew(val []byte, stop, done chan struct{}) {
	defer close(done)
	l := &x.lk
	every := x.lease / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		rev, owner := l.rev, l.owner
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		nrev, err := x.s.st.Update(ctx, x.key, val, rev, x.lease)
		if errors.Is(err, mgrkv.ErrRevision) {
			nrev, err = x.ours(ctx, owner)
		}
		cancel()
		l.mu.Lock()
		switch {
		case err == nil:
			l.rev = nrev
		case errors.Is(err, ErrLeaseLost):
			l.lost = true
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		// Another error (the store unreachable, a failover): try again
		// soon; Release tells whether the lease held.
		if err == nil {
			t.Reset(every)
		} else {
			t.Reset(min(every, pollEvery))
		}
	}
}

// ours is what a write checked against our last revision that failed
// tells: the key's revision if it is still the acquisition owner's (a
// write of ours whose answer was lost), else ErrLeaseLost.
func (x *kvObj) ours(ctx context.Context, owner string) (uint64, error) {
	e, err := x.s.st.Get(ctx, x.key)
	if err != nil {
		return 0, err
	}
	var h lockHolder
	if e.Op == mgrkv.OpPut && codec.Unmarshal(e.Value, &h) == nil && h.Owner == owner {
		return e.Revision, nil
	}
	return 0, ErrLeaseLost
}

// release stops the renewals and deletes the key if it is still ours.
func (x *kvObj) release(ctx context.Context, gid uint64) error {
	l := &x.lk
	l.mu.Lock()
	if l.rev == 0 || l.gid != gid {
		l.mu.Unlock()
		return mp.ErrNotHeld
	}
	if l.count > 1 {
		l.count--
		l.mu.Unlock()
		return nil
	}
	stop, done := l.stop, l.done
	l.stop = nil
	l.mu.Unlock()
	if stop == nil {
		return mp.ErrNotHeld // another goroutine is releasing it
	}
	close(stop)
	<-done
	x.s.mu.Lock()
	delete(x.s.renewed, x)
	x.s.mu.Unlock()
	// The proxy no longer holds the lock from here on, whatever the
	// store says: another goroutine may take it as soon as it is free.
	l.mu.Lock()
	rev, lost, owner := l.rev, l.lost, l.owner
	l.rev, l.token, l.owner = 0, 0, ""
	l.mu.Unlock()
	if lost {
		return ErrLeaseLost
	}
	wctx, cancel := writeCtx(ctx)
	defer cancel()
	var cont mgrkv.Contention
	for {
		err := x.s.st.Delete(wctx, x.key, rev)
		if !errors.Is(err, mgrkv.ErrRevision) {
			return err
		}
		if rev, err = x.ours(wctx, owner); err != nil {
			return err
		}
		// Still ours, rewritten meanwhile (a renewal whose answer was
		// lost, or another program copying our entry).
		if err := cont.Lost(wctx); err != nil {
			return err
		}
	}
}

// fencingToken is the token of the lock's acquisition, or 0.
func (x *kvObj) fencingToken() uint64 {
	x.lk.mu.Lock()
	defer x.lk.mu.Unlock()
	return x.lk.token
}

// ---- Queue ----

func (x *kvObj) queueCall(ctx context.Context, op uint64, a [][]byte) (*cconn, error) {
	st := x.s.st
	switch op {
	case opQueuePut, opQueueTryPut:
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		return kvReply(), st.QueuePut(wctx, x.key, a[0])
	case opQueueGet, opQueueTryGet:
		v, ack, err := st.QueueTake(ctx, x.key, op == opQueueGet && ctx.Err() == nil)
		if errors.Is(err, mgrkv.ErrEmpty) {
			if op == opQueueGet && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, mp.ErrEmpty
		}
		if err != nil {
			return nil, err
		}
		if h := mgrkv.TestHookTaken; h != nil {
			h()
		}
		cc := kvReply(v)
		cc.kvAck = ack
		return cc, nil
	case opQueueSize:
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		n, err := st.QueueLen(wctx, x.key)
		return kvReply(kvInt(n)), err
	case opQueueFull:
		return kvReply(kvBool(false)), nil
	}
	return nil, errMethod(x.kind, op)
}

var errKVNoMarshal = errors.New("manager: a proxy of a replicated store's object does not travel: ask for it by its name")

// newKVProxy is newProxy for a Manager of a replicated store.
func newKVProxy[P any](ctx context.Context, m *Manager, kind string, opts []Option, init func(*P) *ref, args []any) (*P, error) {
	var o createOpts
	for _, f := range opts {
		f(&o)
	}
	x, err := m.kv.open(ctx, kind, &o, args)
	if err != nil {
		return nil, err
	}
	p := new(P)
	r := init(p)
	r.kv = x
	r.tok = token{Network: m.kv.network, Address: m.kv.address, Kind: kind}
	return p, nil
}

// ErrContended is returned by a call on an object of a replicated store
// whose write, checked against the revision it read, was overtaken by
// other writers many times in a row (see the package documentation).
var ErrContended = mgrkv.ErrContended

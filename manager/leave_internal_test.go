//go:build linux

package manager

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/codec"
)

// untouchedObj is an object that counts the times the server asks it to
// give back what a session held in it.
type untouchedObj struct{ asked atomic.Int64 }

func (u *untouchedObj) handle(x *call) waitFn               { x.badOp(); return nil }
func (u *untouchedObj) sessionGone(*session)                { u.asked.Add(1) }
func (u *untouchedObj) free() (vals [][]byte, ids []uint64) { return nil, nil }

// TestLeaveVisitsOnlyWhatTheSessionHeld ends a session that holds a Lock,
// an RLock, units of a BoundedSemaphore, a Condition's own RLock and a
// reference, on a server that serves 1000 other objects the session never
// touched: leave gives back each of its holdings and asks none of the
// others (so its cost does not grow with them).
func TestLeaveVisitsOnlyWhatTheSessionHeld(t *testing.T) {
	s := new(Server)
	s.init()
	owner := s.join(sessionID{1}, 100)
	untouched := &untouchedObj{}
	for range 1000 {
		s.add("untouched", untouched, owner, "")
	}
	serve := func(kind string, args ...[]byte) impl {
		im, _, msg := s.newImpl(nil, kind, args)
		if im == nil {
			t.Fatal(msg)
		}
		s.add(kind, im, owner, "")
		return im
	}
	lock := serve(kindLock).(*lockObj)
	rlock := serve(kindRLock).(*lockObj)
	sem := serve(kindBounded, codec.AppendInt(nil, 3)).(*semObj)
	cond := serve(kindCondition, []byte{codec.Null}).(*condObj)

	sess := s.join(sessionID{2}, 200)
	ref := s.add(kindDict, &dictObj{idx: map[string]int{}}, sess, "")
	take := func(l *lockObj, depth int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if ok, _ := l.take(sess, 7, depth); !ok {
			t.Fatal("free lock not taken")
		}
	}
	take(lock, 1)
	take(rlock, 2)
	take(cond.lock, 1)
	sem.mu.Lock()
	sem.value -= 2
	sem.took(sess)
	sem.took(sess)
	sem.mu.Unlock()

	s.leave(sess)

	if n := untouched.asked.Load(); n != 0 {
		t.Errorf("leave asked %d objects the session never touched", n)
	}
	for name, l := range map[string]*lockObj{"Lock": lock, "RLock": rlock, "Condition's RLock": cond.lock} {
		if l.holder != nil || l.died != 200 {
			t.Errorf("%s after its holder left: holder %v, died %d; want free, told pid 200", name, l.holder, l.died)
		}
	}
	if sem.value != 3 || len(sem.held) != 0 {
		t.Errorf("BoundedSemaphore after its holder left: value %d, held %v; want 3 and none", sem.value, sem.held)
	}
	if o := s.lookup(ref.id); o != nil {
		t.Errorf("the object only the session referred to is still served (%d refs)", o.refs)
	}
	if objs, sessions := s.counts(); objs != 1004 || sessions != 1 {
		t.Errorf("server holds %d objects and %d sessions, want 1004 and 1", objs, sessions)
	}
}

// TestLeaveFreedObjectsGrantNothing ends a session that holds a Lock and a
// unit of a BoundedSemaphore which have been freed meanwhile (nothing
// refers to them), with a waiter of another session in each that has
// waited long: the waiters are not granted what the session held, as
// they have been told the objects are gone.
func TestLeaveFreedObjectsGrantNothing(t *testing.T) {
	s := new(Server)
	s.init()
	sess := s.join(sessionID{1}, 100)
	other := s.join(sessionID{2}, 200)
	lockIm, _, _ := s.newImpl(nil, kindLock, nil)
	semIm, _, _ := s.newImpl(nil, kindBounded, [][]byte{codec.AppendInt(nil, 1)})
	lock, sem := lockIm.(*lockObj), semIm.(*semObj)
	lo, so := s.add(kindLock, lock, sess, ""), s.add(kindBounded, sem, sess, "")

	lock.mu.Lock()
	lock.take(sess, 1, 1)
	lw := lock.enqueue(other, 1, 1)
	lw.since = time.Now().Add(-time.Hour) // starving: a release would hand it over
	lock.mu.Unlock()
	sem.mu.Lock()
	sem.value--
	sem.took(sess)
	sw := newWaiter(other)
	sem.waiters = append(sem.waiters, sw)
	sem.mu.Unlock()

	s.sessionUnref(sess, lo.id)
	s.sessionUnref(sess, so.id)
	s.leave(sess)
	if lw.granted || lock.holder != nil {
		t.Errorf("freed Lock: waiter granted %v, holder %v; want neither", lw.granted, lock.holder)
	}
	if sw.granted {
		t.Error("freed BoundedSemaphore: its waiter was granted the leaving session's unit")
	}
}

// BenchmarkLeave is a session's join and leave (holding one reference) on
// a server that serves n other objects: its cost should not grow with n.
func BenchmarkLeave(b *testing.B) {
	for _, n := range []int{1, 1000, 100000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			s := new(Server)
			s.init()
			owner := s.join(sessionID{1}, 1)
			for range n {
				s.add(kindLock, &lockObj{gone: newGone()}, owner, "")
			}
			var id sessionID
			for i := 0; b.Loop(); i++ {
				id[15] = byte(i)
				sess := s.join(id, 2)
				s.add(kindDict, &dictObj{idx: map[string]int{}}, sess, "")
				s.leave(sess)
			}
		})
	}
}

//go:build linux

package manager_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/mgrkv"
	"github.com/go-mp/mp/manager"
)

// racedStore is an mgrkv.Store in memory in which, while raced is set,
// another writer always comes in between a read and a write checked
// against it: every Update and checked Delete fails with ErrRevision (and
// the key's revision moves on), as a peer writing the key without pause
// would make them fail.
type racedStore struct {
	mu     sync.Mutex
	rev    uint64
	keys   map[string]mgrkv.Entry
	raced  atomic.Bool
	writes atomic.Int64 // checked writes refused
}

func (s *racedStore) Open(context.Context, string, []byte) (mgrkv.Store, error) { return s, nil }

func (s *racedStore) Get(_ context.Context, key string) (mgrkv.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key], nil
}

func (s *racedStore) set(key string, v []byte, op mgrkv.Op) uint64 {
	s.rev++
	s.keys[key] = mgrkv.Entry{Value: v, Revision: s.rev, Op: op}
	return s.rev
}

func (s *racedStore) Put(_ context.Context, key string, v []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set(key, v, mgrkv.OpPut), nil
}

func (s *racedStore) Create(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, mgrkv.Op, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e.Op == mgrkv.OpPut {
		return 0, 0, mgrkv.ErrExists
	}
	return s.set(key, v, mgrkv.OpPut), e.Op, nil
}

// check refuses a write checked against rev while raced, or when rev is
// not the key's.
func (s *racedStore) check(key string, rev uint64) error {
	if s.raced.Load() {
		s.writes.Add(1)
		e := s.keys[key]
		s.set(key, e.Value, e.Op) // the other writer's write
		return mgrkv.ErrRevision
	}
	if s.keys[key].Revision != rev {
		return mgrkv.ErrRevision
	}
	return nil
}

func (s *racedStore) Update(_ context.Context, key string, v []byte, rev uint64, ttl time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(key, rev); err != nil {
		return 0, err
	}
	return s.set(key, v, mgrkv.OpPut), nil
}

func (s *racedStore) Delete(_ context.Context, key string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev != 0 {
		if err := s.check(key, rev); err != nil {
			return err
		}
	}
	s.set(key, nil, mgrkv.OpDelete)
	return nil
}

func (s *racedStore) Keys(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, e := range s.keys {
		if strings.HasPrefix(k, prefix) && e.Op == mgrkv.OpPut {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (s *racedStore) Watch(string) (<-chan struct{}, func(), error) {
	return make(chan struct{}), func() {}, nil
}

var errNoQueues = errors.New("racedStore: no queues")

func (s *racedStore) QueuePut(context.Context, string, []byte) error { return errNoQueues }
func (s *racedStore) QueueTake(context.Context, string, bool) ([]byte, func(context.Context) error, error) {
	return nil, nil, errNoQueues
}
func (s *racedStore) QueueLen(context.Context, string) (int, error) { return 0, errNoQueues }
func (s *racedStore) Close() error                                  { return nil }

// TestKVRacedWrites: a write checked against the revision read, which
// another writer always overtakes, is tried a bounded number of times,
// with pauses, and the call returns ErrContended within seconds, though
// its ctx is far (the loops retried at once until the ctx ended). Every
// compare-and-swap loop of the replicated objects is driven so.
func TestKVRacedWrites(t *testing.T) {
	st := &racedStore{keys: map[string]mgrkv.Entry{}}
	mgrkv.Register("raced-test", st)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := manager.Connect(ctx, "raced-test", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v, err := manager.NewValue(ctx, m, 1, manager.Named("v"))
	if err != nil {
		t.Fatal(err)
	}
	sem, err := manager.NewSemaphore(ctx, m, 1, manager.Named("s"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := manager.NewList(ctx, m, []int{1}, manager.Named("l"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := manager.NewDict[string, int](ctx, m, manager.Named("d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	lk, err := manager.NewLock(ctx, m, manager.Named("lk"))
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	st.raced.Store(true)
	calls := []struct {
		name string
		call func() error
	}{
		{"Swap", func() error { _, err := v.Swap(ctx, 2); return err }},
		{"CompareAndSwap", func() error { _, err := v.CompareAndSwap(ctx, 1, 2); return err }},
		{"Semaphore.Release", func() error { return sem.Release(ctx) }},
		{"List.Append", func() error { return l.Append(ctx, 2) }},
		{"Dict.Pop", func() error { _, _, err := d.Pop(ctx, "a"); return err }},
		{"Lock.Release", func() error { return lk.Release(ctx) }},
	}
	for _, c := range calls {
		before := st.writes.Load()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- c.call() }()
		select {
		case err := <-done:
			if !errors.Is(err, manager.ErrContended) {
				t.Errorf("%s always overtaken: %v, want ErrContended", c.name, err)
			}
			t.Logf("%s: %v after %d refused writes in %v", c.name, err, st.writes.Load()-before, time.Since(start))
		case <-time.After(20 * time.Second):
			t.Fatalf("%s always overtaken: still trying after 20 s (%d refused writes)", c.name, st.writes.Load()-before)
		}
	}
}

//go:build linux

// Package mgrkv is the seam between package manager, which must not
// import NATS, and the replicated stores its proxies can use instead of a
// manager server: a store registers a Driver under a network name (package
// cluster registers "nats" when it is imported), as database/sql drivers
// do, and manager.Connect with that network opens it. The manager keeps
// the meaning of every object (what a Dict, a Lock, a Queue is); a Store
// only offers a bucket of keys with revisions and per-key leases, and
// work queues.
package mgrkv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Errors a Store returns (wrapped or not; callers test with errors.Is).
var (
	// ErrExists: Create found the key set.
	ErrExists = errors.New("mgrkv: key exists")
	// ErrRevision: the key's last revision is not the one expected.
	ErrRevision = errors.New("mgrkv: wrong revision")
	// ErrEmpty: a work queue had nothing to take within the wait.
	ErrEmpty = errors.New("mgrkv: queue empty")
)

// Op is what the last revision of a key says.
type Op uint8

const (
	OpNone    Op = iota // the key was never set (or its history is gone)
	OpPut               // the key holds a value
	OpDelete            // deleted (by Delete)
	OpExpired           // its lease ran out (the store removed it)
)

// Entry is the last revision of a key.
type Entry struct {
	Value    []byte
	Revision uint64 // the store's sequence: grows with every write to the bucket
	Op       Op
}

// Driver opens a Store at address (several URLs separated by commas),
// authenticated with key (nil: none).
type Driver interface {
	Open(ctx context.Context, address string, key []byte) (Store, error)
}

// Store is a connection to a replicated store.
type Store interface {
	// Get returns the last revision of key (Op OpNone if none).
	Get(ctx context.Context, key string) (Entry, error)
	// Put sets key whatever it held.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Create sets key if its last revision is not OpPut, with a lease of
	// ttl if ttl > 0 (the key expires unless renewed by Update), and
	// returns the new revision and what the key's last revision was
	// (OpNone, OpDelete or OpExpired); ErrExists when it is set.
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (rev uint64, prev Op, err error)
	// Update sets key if its last revision is rev (ErrRevision
	// otherwise), with a lease of ttl if ttl > 0.
	Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error)
	// Delete deletes key if its last revision is rev (any if rev is 0);
	// ErrRevision otherwise.
	Delete(ctx context.Context, key string, rev uint64) error
	// Keys returns the keys set under prefix (which ends with "."), as
	// the store has them at some moment.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Watch returns a channel that receives (without blocking the store:
	// it has room for one) after each write to key, and a function that
	// stops it. A write may also go unnoticed (an expiry, a reconnection):
	// watchers poll too.
	Watch(key string) (<-chan struct{}, func(), error)

	// QueuePut appends value to the work queue name. A name is made of
	// the characters of unpadded URL-safe base64 and "=".
	QueuePut(ctx context.Context, name string, value []byte) error
	// QueueTake takes the oldest item of queue name, waiting until ctx
	// ends (not at all when wait is false: ErrEmpty). The item comes back
	// to the queue unless the ack function is called: the store gives it
	// again after a while (the store's ack wait).
	QueueTake(ctx context.Context, name string, wait bool) (value []byte, ack func(context.Context) error, err error)
	// QueueLen returns the number of items in queue name: every item
	// whose QueuePut returned before QueueLen was called, taken or not,
	// unless its ack had returned by then.
	QueueLen(ctx context.Context, name string) (int, error)

	// Close closes the connection.
	Close() error
}

// TestHookTaken, set by tests only (before any Get), runs in a manager
// Queue's Get once it has taken an item and before it acknowledges it.
var TestHookTaken func()

var drivers sync.Map // network name -> Driver

// Register makes d the driver of network.
func Register(network string, d Driver) { drivers.Store(network, d) }

// Lookup returns the driver of network, or nil.
func Lookup(network string) Driver {
	if d, ok := drivers.Load(network); ok {
		return d.(Driver)
	}
	return nil
}

// ErrContended is what Contention.Lost returns once a write checked
// against the revision read has been overtaken Rounds times in a row.
var ErrContended = errors.New("manager: a write was overtaken by other writers too many times in a row")

// Rounds bounds the rounds a compare-and-swap loop may lose in a row:
// with the pauses of Contention (Rounds-1 of them, each up to 1, 2, 4,
// ... 64 ms, then 64 ms: 2.7 s in all at most, half that on average),
// about 1.3 s of being overtaken.
const Rounds = 48

// Contention paces a compare-and-swap loop (read a key, write it checked
// against the revision read, again when another writer came in between):
// each round lost waits a random while, up to twice the last, from 1 ms
// to 64 ms, so that writers that overtake one another spread out rather
// than spin, and the Rounds-th gives up with ErrContended, so that a
// writer that never stops (another program writing the key without
// pause) cannot keep a call going for ever whatever its ctx. The zero
// value is ready.
type Contention struct{ n int }

// Lost counts a round lost and waits before the next; ErrContended after
// Rounds of them, ctx's error if ctx ends first.
func (c *Contention) Lost(ctx context.Context) error {
	c.n++
	if c.n >= Rounds {
		return fmt.Errorf("%w (%d rounds)", ErrContended, c.n)
	}
	limit := time.Millisecond << min(c.n-1, 6)
	t := time.NewTimer(time.Duration(rand.Int64N(int64(limit))) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

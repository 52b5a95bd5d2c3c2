//go:build linux

package mp

import (
	"io"

	"github.com/go-mp/mp/internal/codec"
)

// RawSocketForTest exposes a Conn's socket so tests can write bad frames.
func RawSocketForTest(c *Conn) io.Writer { return c.t.(io.Writer) }

// EncodeForTest encodes v with the codec but outside mp's sending path.
func EncodeForTest(v any) ([]byte, error) { return codec.Marshal(v) }

// QueueLocksHeld reports whether the producer and consumer locks of q are
// held, so tests can kill a process in the middle of a Put or a Get.
func QueueLocksHeld[T any](q *Queue[T]) (producer, consumer bool) {
	return q.c.plock.owner() != 0, q.c.clock.owner() != 0
}

// MapChunkBytes is about the most bytes of encoded items in a chunk of
// Map's default chunking.
const MapChunkBytes = mapChunkBytes

// PoolArgBytes reports the bytes of Map's chunks that p encoded to send
// and has not written to a worker yet: now, and the most there have been;
// and how many chunks it encoded so.
func PoolArgBytes(p *Pool) (held, peak, sends int64) {
	return p.args.held.Load(), p.args.peak.Load(), p.args.sends.Load()
}

// SetTestHookReaped makes f run in the reaper of every Process between its
// lock's release and the closing of its done channel; nil removes it.
func SetTestHookReaped(f func(*Process)) {
	if f == nil {
		testHookReaped.Store(nil)
		return
	}
	testHookReaped.Store(&f)
}

// RaceEnabled says that the race detector is on (a test of allocations
// skips then: the detector allocates).
const RaceEnabled = raceEnabled

//go:build linux

package mp_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// A steady stream of large items, after a burst that left more free chunks
// than the queue keeps backed, reuses the backed ones: no Put faults in
// memory that was just given back. Draining the burst gives no memory
// back (the consumer does not stop for it, and the producer may reuse it);
// a consumer that finds the queue empty gives back all but what it keeps.
func TestQueueReusesBackedChunks(t *testing.T) {
	for _, size := range []int{1 << 20, 4 << 20} {
		q := newQueue[[]byte](t, 0)
		ctx := context.Background()
		item := bytes.Repeat([]byte{7}, size)
		const burst = 24
		for range burst {
			if err := q.Put(ctx, item); err != nil {
				t.Fatal(err)
			}
		}
		full := mp.QueueBackedBytesForTest(q)
		for range burst {
			if _, err := q.Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if backed := mp.QueueBackedBytesForTest(q); backed < full {
			t.Errorf("%d-byte items: %d of %d MiB given back while draining", size, (full-backed)>>20, full>>20)
		}
		// Kept: room for two more items, at least 8 MiB, the chunk in
		// use, and the header; the burst took about 24 items' worth.
		limit := int64(2*size + 12<<20)
		// Found empty by TryGets, each giving back a few chunks only (a
		// TryGet must not wait), or by a Get that waits.
		if size == 1<<20 {
			for i := range burst {
				before := mp.QueueBackedBytesForTest(q)
				if _, err := q.TryGet(); !errors.Is(err, mp.ErrEmpty) {
					t.Fatalf("TryGet on the drained queue = %v", err)
				}
				if back := before - mp.QueueBackedBytesForTest(q); back > 4<<20 {
					t.Fatalf("TryGet %d gave back %d MiB at once", i, back>>20)
				}
			}
		} else {
			got := make(chan error, 1)
			go func() {
				_, err := q.Get(ctxTimeout(t, 30*time.Second))
				got <- err
			}()
			// Once it waits, not once it has given back enough: it gives
			// back one chunk at a time, and stops when an item comes.
			waitFor(t, func() bool { return mp.QueueGetsWaitingForTest(q) == 1 })
			if err := q.Put(ctx, item); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatalf("the waiting Get = %v", err)
			}
		}
		backed := mp.QueueBackedBytesForTest(q)
		if backed > limit {
			t.Errorf("%d-byte items: %d MiB still backed once found empty, more than %d MiB", size, backed>>20, limit>>20)
		}
		// The first items after the burst fill the rest of its last chunk,
		// which had never been written.
		for i := range 22 {
			if i == 2 {
				backed = mp.QueueBackedBytesForTest(q)
			}
			if err := q.Put(ctx, item); err != nil {
				t.Fatal(err)
			}
			if now := mp.QueueBackedBytesForTest(q); i >= 2 && now > backed {
				t.Fatalf("%d-byte items: Put %d after draining faulted in %d KiB the queue had given back",
					size, i, (now-backed)>>10)
			}
			if got, err := q.Get(ctx); err != nil || len(got) != size {
				t.Fatalf("Get = %d bytes, %v", len(got), err)
			}
		}
	}
}

type blob struct{ B []byte }

// allocated returns the bytes the Go heap allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Putting a large item takes no fresh memory once the queue handle has
// put one like it (a []byte none at all: it is copied into the queue from
// where it lies), and getting one takes only the memory of the value
// returned, even for an item that spans chunks.
func TestQueueLargeItemsReuseMemory(t *testing.T) {
	ctx := context.Background()
	const size, n = 3 << 20, 8 // 3 MiB: every item spans chunks
	data := bytes.Repeat([]byte{1}, size)
	t.Run("bytes", func(t *testing.T) {
		q := newQueue[[]byte](t, 0)
		if a := allocated(func() {
			for range n {
				if err := q.Put(ctx, data); err != nil {
					t.Fatal(err)
				}
			}
		}); a > 1<<20 {
			t.Errorf("%d Puts of %d MiB allocated %d MiB", n, size>>20, a>>20)
		}
		if a := allocated(func() {
			for range n {
				if got, err := q.Get(ctx); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Get = %d bytes, %v", len(got), err)
				}
			}
		}); a > n*size*5/4 {
			t.Errorf("%d Gets of %d MiB allocated %d MiB", n, size>>20, a>>20)
		}
	})
	t.Run("struct", func(t *testing.T) {
		q := newQueue[blob](t, 0)
		// The first Put and Get take the buffer the next ones reuse.
		q.Put(ctx, blob{data})
		q.Get(ctx)
		if a := allocated(func() {
			for range n {
				if err := q.Put(ctx, blob{data}); err != nil {
					t.Fatal(err)
				}
			}
		}); a > 1<<20 {
			t.Errorf("%d Puts of %d MiB allocated %d MiB", n, size>>20, a>>20)
		}
		if a := allocated(func() {
			for range n {
				if got, err := q.Get(ctx); err != nil || !bytes.Equal(got.B, data) {
					t.Fatalf("Get = %d bytes, %v", len(got.B), err)
				}
			}
		}); a > n*size*5/4 {
			t.Errorf("%d Gets of %d MiB allocated %d MiB", n, size>>20, a>>20)
		}
	})
}

// Byte items of the sizes whose memory is mapped in before the copy
// (64 KiB to 128 KiB) arrive intact, whether they lie in one chunk or
// span two: 40 items of each size cross several 1 MiB chunk boundaries.
func TestQueueBytesPrefaultedSizes(t *testing.T) {
	ctx := context.Background()
	q, err := mp.NewQueue[[]byte](0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, size := range []int{64<<10 - 1, 64 << 10, 100_003, 128 << 10, 128<<10 + 1} {
		for i := range 40 {
			item := make([]byte, size)
			for j := range item {
				item[j] = byte(j*7 + i + size)
			}
			if err := q.Put(ctx, item); err != nil {
				t.Fatal(err)
			}
			got, err := q.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, item) {
				t.Fatalf("size %d, item %d: got %d bytes, not what was put", size, i, len(got))
			}
		}
	}
}

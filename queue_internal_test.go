//go:build linux

package mp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/codec"
)

// Put writes a []byte as the codec would encode it, so that a Queue of
// another type (any, say) reads the same item.
func TestQueueByteStringHead(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 23, 24, 255, 256, 65535, 65536, 1<<20 + 3} {
		var b []byte
		if n >= 0 {
			b = bytes.Repeat([]byte{9}, n)
		}
		want, err := codec.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := append(byteStringHead(nil, b), b...); !bytes.Equal(got, want) {
			t.Errorf("%d bytes: head %x, the codec's %x", n, got[:min(len(got), 9)], want[:min(len(want), 9)])
		}
	}
}

// Get of a []byte decodes every item as the codec does: the same value
// (nil or not) or an error, whatever another process wrote, and whether
// the item lies in one chunk or spans two.
func TestQueueTakeBytesAsCodec(t *testing.T) {
	long := bytes.Repeat([]byte{5}, 300)
	items := [][]byte{
		{0xf6}, {0xf7}, {0x40}, {0x43, 1, 2, 3}, {0x43, 1, 2}, {0x42, 1, 2, 3},
		{0x58, 3, 1, 2, 3}, {0x59, 0, 3, 1, 2, 3}, {0x5a, 0, 0, 0, 3, 1, 2, 3},
		{0x5b, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3}, {0x5b, 0xff, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3},
		{0x5c, 1}, {0x5f, 0x41, 1, 0xff}, {0x63, 'a', 'b', 'c'}, {0x01}, {0xc2, 0x41, 1}, {},
		{0x58}, {0x59, 1}, append([]byte{0x59, 1, 44}, long...), append([]byte{0x59, 1, 45}, long...),
	}
	for _, left := range []int{0, 4, 7} {
		q, err := NewQueue[[]byte](0)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range items {
			checkTakeBytes(t, q, item, left)
		}
		q.Close()
	}
}

func FuzzQueueTakeBytes(f *testing.F) {
	f.Add([]byte{0x43, 1, 2, 3}, uint8(7))
	f.Add([]byte{0xf6}, uint8(4))
	f.Add([]byte{0x5f, 0x41, 1, 0xff}, uint8(0))
	q, err := NewQueue[[]byte](0)
	if err != nil {
		f.Fatal(err)
	}
	defer q.Close()
	f.Fuzz(func(t *testing.T, item []byte, left uint8) {
		checkTakeBytes(t, q, item, int(left%12))
	})
}

// checkTakeBytes puts item into q (a Queue of []byte) as raw bytes, after
// a filler that leaves left bytes of the chunk before the item's 4-byte
// length (0: no filler; 4: the item starts exactly at the chunk's end; 7:
// it straddles two chunks), and checks that Get decodes it as the codec
// does.
func checkTakeBytes(t *testing.T, q *Queue[[]byte], item []byte, left int) {
	t.Helper()
	ctx := context.Background()
	if left > 0 {
		_, off, _ := unpackPos(q.c.tail.Load())
		filler := chunkSize - off - 4 - left
		if filler < 0 {
			filler += chunkSize - chunkHeader
		}
		if err := q.c.put(ctx, make([]byte, filler), nil, false); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryGet(); err == nil {
			t.Fatal("filler decoded")
		}
		if _, off, _ := unpackPos(q.c.tail.Load()); off != chunkSize-left {
			t.Fatalf("filler left the tail at %d", off)
		}
	}
	if err := q.c.put(ctx, item[:min(len(item), 1)], item[min(len(item), 1):], false); err != nil {
		t.Fatal(err)
	}
	var want []byte
	werr := decodeItem(item, &want)
	got, gerr := q.TryGet()
	if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) || (got == nil) != (want == nil) {
		t.Errorf("left=%d item %x: Get = %x (nil %v), %v; the codec: %x (nil %v), %v",
			left, item[:min(len(item), 12)], got, got == nil, gerr, want, want == nil, werr)
	}
}

// A chunk link or position out of range in the shared memory (another
// process wrote it) makes Get or Put fail with an error, not panic.
func TestQueueCorruptLink(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(q *queueCore)
	}{
		{"link", func(q *queueCore) { q.nextOf(0).Store(maxChunks + 7) }},
		{"head", func(q *queueCore) { q.head.Store(packPos(maxChunks+1, chunkHeader, 0)) }},
		{"offset", func(q *queueCore) { q.head.Store(packPos(0, chunkSize+1, 0)) }},
		{"loop", func(q *queueCore) { // the item's first chunk links to itself
			slot, _, _ := unpackPos(q.head.Load())
			q.nextOf(slot).Store(uint32(slot + 1))
		}},
		{"tail", func(q *queueCore) { q.tail.Store(packPos(maxChunks+1, chunkHeader, 1)) }},
		{"tail link", func(q *queueCore) {
			slot, _, _ := unpackPos(q.tail.Load())
			q.tail.Store(packPos(slot, chunkSize, 1))
			q.nextOf(slot).Store(maxChunks + 1)
		}},
	} {
		q, err := NewQueue[[]byte](0)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := q.Put(ctx, make([]byte, 3<<20)); err != nil {
			t.Fatal(err)
		}
		tc.corrupt(q.c)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: Get panicked: %v", tc.name, r)
				}
			}()
			if strings.HasPrefix(tc.name, "tail") {
				if err := q.TryPut([]byte{1}); !errors.Is(err, errQueueCorrupt) {
					t.Errorf("%s: Put = %v", tc.name, err)
				}
			} else if _, err := q.TryGet(); !errors.Is(err, errQueueCorrupt) {
				t.Errorf("%s: Get = %v", tc.name, err)
			}
		}()
		q.Close()
	}
}

// An item of 4 GiB or more, whose length does not fit the queue's 4
// bytes, is refused (it would otherwise be written with its length cut).
func TestQueueItemTooLarge(t *testing.T) {
	// Address space only: Put refuses it before reading a byte.
	huge, err := unix.Mmap(-1, 0, maxItem+1, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Skip(fmt.Sprintf("cannot reserve 4 GiB of address space: %v", err))
	}
	defer unix.Munmap(huge)
	q, err := NewQueue[[]byte](0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.TryPut(huge); !errors.Is(err, ErrItemTooLarge) {
		t.Fatalf("Put of 4 GiB = %v", err)
	}
	if q.Qsize() != 0 {
		t.Fatal("the refused item is in the queue")
	}
}

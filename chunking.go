//go:build linux

package mp

import (
	"bytes"
	"reflect"
	"unsafe"

	"github.com/go-mp/mp/internal/codec"
)

// Map's chunks are encoded by package codec (codec.EncodeChunk); here is
// how Map cuts its items into chunks.

// mapChunkBytes is about the most bytes of encoded items in a chunk of
// Map's default chunking. Python's rule alone (see defaultChunksize)
// makes chunks of an eighth of the items on two workers: 128 MiB each for
// a million items of 1 KiB, which a worker must receive whole before it
// starts, and which the pool holds encoded while it sends them (see
// Pool.sendTo). Smaller chunks cost more: each is a task with its round
// trip, and the worker decodes each into new memory (see codec.DecodeChunkAny),
// which the runtime gives back to the system the sooner the smaller its
// heap. On a 2-core VM, Map of 1 KiB and 64 KiB items took about 30%
// less CPU with chunks of 4 MiB than of 1 MiB, and no less with 8 MiB.
const mapChunkBytes = 4 << 20

// chunkEnds returns where the chunks of items end: every chunksize items
// if chunksize > 0; else as Python chooses (defaultChunksize), but with no
// more than about maxBytes (mapChunkBytes, or less for a pool on a
// cluster, whose messages are smaller: see Pool.chunkBytes) of encoded
// items each (one item at least). The sizes of strings and byte slices
// are their lengths; those of other types are estimated from a few items
// encoded. Chunks of a fixed-size type are not capped to mapChunkBytes:
// Map sends them from the items' own memory, at no cost in memory. A
// maxBytes below mapChunkBytes is a limit of the transport: it caps every
// chunk, even of a chunksize given.
func chunkEnds[T any](items []T, chunksize, workers, maxBytes int) []chunkEnd {
	n := len(items)
	capped := (chunksize <= 0 && !codec.RawChunks[T]()) || maxBytes < mapChunkBytes
	if chunksize <= 0 {
		chunksize = defaultChunksize(n, workers)
	}
	ends := make([]chunkEnd, 0, (n+chunksize-1)/chunksize)
	if !capped {
		for off := 0; off < n; off += chunksize {
			ends = append(ends, chunkEnd{end: min(off+chunksize, n)})
		}
		return ends
	}
	size := itemSize(items)
	for off := 0; off < n; {
		end, sum := off, 0
		for end < n && end-off < chunksize && (end == off || sum+size(end) <= maxBytes) {
			sum += size(end)
			end++
		}
		ends = append(ends, chunkEnd{end: end, size: sum})
		off = end
	}
	return ends
}

// chunkEnd is where a chunk ends, and about how many bytes its items take
// encoded if chunkEnds measured them (else 0).
type chunkEnd struct{ end, size int }

// itemSize returns a function giving about how many bytes item i of
// items takes encoded.
func itemSize[T any](items []T) func(i int) int {
	t := reflect.TypeFor[T]()
	switch {
	case codec.RawChunks[T]():
		// Sent as their memory (see codec.RawChunks).
		return func(int) int { return int(t.Size()) }
	case codec.HasOwnCodec(t):
	case t.Kind() == reflect.String:
		return func(i int) int { return 9 + len(*(*string)(unsafe.Pointer(&items[i]))) }
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return func(i int) int { return 9 + len(*(*[]byte)(unsafe.Pointer(&items[i]))) }
	}
	// The mean size of up to 16 items spread over the slice.
	var buf bytes.Buffer
	k := min(len(items), 16)
	for j := range k {
		if codec.EncodeItem(&buf, items[j*len(items)/k]) != nil {
			break // Map fails on it when it is sent
		}
	}
	mean := max(buf.Len()/max(k, 1), 1)
	return func(int) int { return mean }
}

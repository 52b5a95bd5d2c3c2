//go:build linux

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
)

// cutArg cuts a CBOR chunk and a raw one into parts of at most room
// bytes that hold the items in order, reports an item alone too large
// with its size, and rejects a malformed chunk; joinResults gives back the
// chunk's encoding and rejects a part with more or fewer results than it
// had items.
func TestCutAndJoin(t *testing.T) {
	items := make([]string, 50)
	for i := range items {
		items[i] = strings.Repeat("x", 10*i)
	}
	arg, err := codec.EncodeChunk(items)
	if err != nil {
		t.Fatal(err)
	}
	cbor := clusterhook.ChunkForm{}
	parts, counts, tooBig, err := cutArg(arg, cbor, 1000)
	if err != nil || tooBig != 0 || len(parts) < 2 {
		t.Fatalf("cut: %d parts, tooBig %d, %v", len(parts), tooBig, err)
	}
	var got []string
	for k, p := range parts {
		if len(p) > 1000 {
			t.Errorf("part %d: %d bytes", k, len(p))
		}
		v, err := codec.DecodeChunkAny[string](p)
		if err != nil || len(v) != counts[k] {
			t.Fatalf("part %d: %d items, want %d: %v", k, len(v), counts[k], err)
		}
		got = append(got, v...)
	}
	if !slices.Equal(got, items) {
		t.Errorf("parts hold %q", got)
	}
	joined, err := joinResults(parts, counts, cbor)
	if err != nil || !bytes.Equal(joined, arg) {
		t.Errorf("joined parts differ from the chunk: %v", err)
	}
	if _, err := joinResults(parts, append([]int{counts[0] + 1}, counts[1:]...), cbor); !errors.Is(err, ErrMalformed) {
		t.Errorf("a part with a result short: %v", err)
	}
	if _, err := joinResults([][]byte{{0x82, 1}}, []int{2}, cbor); !errors.Is(err, ErrMalformed) {
		t.Errorf("a truncated part: %v", err)
	}
	// Item 40, the first too large: 400 bytes of text, 3 of its head, 1
	// of the array's.
	if _, _, tooBig, err := cutArg(arg, cbor, 400); err != nil || tooBig != 404 {
		t.Errorf("items of up to 490 bytes in parts of 400: tooBig %d, want 404; %v", tooBig, err)
	}
	if _, _, _, err := cutArg(arg[:len(arg)-1], cbor, 1000); !errors.Is(err, ErrMalformed) {
		t.Errorf("a truncated chunk: %v", err)
	}

	ints := make([]int64, 1000)
	for i := range ints {
		ints[i] = int64(i)
	}
	raw := clusterhook.ChunkForm{Raw: true, Size: 8}
	rarg := codec.AsBytes(ints)
	parts, counts, _, err = cutArg(rarg, raw, 1001)
	if err != nil || len(parts) != 8 || counts[0] != 125 || counts[7] != 125 {
		t.Fatalf("raw cut: %d parts %v, %v", len(parts), counts, err)
	}
	if joined, err := joinResults(parts, counts, raw); err != nil || !bytes.Equal(joined, rarg) {
		t.Errorf("raw join: %v", err)
	}
	if _, err := joinResults([][]byte{parts[0][:7]}, counts[:1], raw); !errors.Is(err, ErrMalformed) {
		t.Errorf("a raw part of 7 bytes: %v", err)
	}
	if parts, _, tooBig, _ := cutArg(rarg, raw, 7); parts != nil || tooBig != 8 {
		t.Errorf("raw items of 8 bytes in parts of 7: tooBig %d", tooBig)
	}
}

var failMarked = mp.Register("cluster.test.failmarked", func(b []byte) (int, error) {
	if b[0] != 0 {
		if b[0] == 10 {
			time.Sleep(300 * time.Millisecond) // so that item 20's part most likely fails first
		}
		return 0, fmt.Errorf("item %d fails", b[0])
	}
	return len(b), nil
})

// A chunk cut in parts fails, as one not cut, with the error of its first
// failing item in order, whichever part failed first: each of its items
// yields it, and the loop goes on with the next chunk.
func TestCutChunkFirstError(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	_, pool, items := bigItemsPool(t, 26)
	items[10][0], items[20][0] = 10, 20
	i := 0
	for l, err := range failMarked.Imap(ctx, pool, slices.Values(items), 24) {
		switch {
		case i < 24 && (err == nil || !strings.Contains(err.Error(), "item 10 fails")):
			t.Errorf("item %d: %d, %v; want item 10's error", i, l, err)
		case i >= 24 && (err != nil || l != len(items[i])):
			t.Errorf("item %d: %d, %v", i, l, err)
		}
		i++
	}
	if i != len(items) {
		t.Errorf("%d results of %d", i, len(items))
	}
}

var waitCancel = mp.RegisterCtx("cluster.test.waitcancel", func(ctx context.Context, b []byte) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
})

// Cancelling an Imap whose chunk was cut cancels the chunk's parts: they
// run until cancelled, and the pool closes (it waits for the tasks it has).
func TestCutChunkCancelled(t *testing.T) {
	c, pool, items := bigItemsPool(t, 8)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	go func() {
		// Once the chunk is cut and its parts submitted.
		defer cancel()
		for ctx.Err() == nil {
			c.mu.Lock()
			n := 0
			for s := range c.sessions {
				s.mu.Lock()
				n += len(s.cuts)
				s.mu.Unlock()
			}
			c.mu.Unlock()
			if n > 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for _, err := range waitCancel.Imap(ctx, pool, slices.Values(items), 8) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Imap: %v, want context.Canceled", err)
		}
	}
}

//go:build linux

package codec

import (
	"bytes"
	"reflect"
	"testing"
)

type point struct {
	X, Y int32
	W    float64
	On   bool
}

// celsius has a codec of its own, so its chunks are CBOR.
type celsius float64

func (c celsius) MarshalCBOR() ([]byte, error) { return Marshal(float64(c) + 1000) }
func (c *celsius) UnmarshalCBOR(b []byte) error {
	var f float64
	err := Unmarshal(b, &f)
	*c = celsius(f - 1000)
	return err
}

func chunkRoundTrip[T any](t *testing.T, items []T, raw bool) {
	t.Helper()
	if got := RawChunks[T](); got != raw {
		t.Fatalf("rawChunks[%T] = %v, want %v", items, got, raw)
	}
	b, err := EncodeChunk(items)
	if err != nil {
		t.Fatal(err)
	}
	if raw && !bytes.Equal(b, AsBytes(items)) {
		t.Fatalf("%T: raw chunk is not the items' memory", items)
	}
	dst := make([]T, len(items))
	if err := DecodeChunk(b, dst); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dst, items) {
		t.Fatalf("decodeChunk: %v, want %v", dst, items)
	}
	anyLen, err := DecodeChunkAny[T](b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(anyLen, items) {
		t.Fatalf("decodeChunkAny: %v, want %v", anyLen, items)
	}
	var buf bytes.Buffer
	if c, err := ChunkBytes(&buf, items); err != nil || !bytes.Equal(c, b) {
		t.Fatalf("chunkBytes differs from encodeChunk: %v", err)
	}
}

func TestChunkCodec(t *testing.T) {
	chunkRoundTrip(t, []int{1, -2, 1 << 60}, true)
	chunkRoundTrip(t, []point{{1, 2, 3.5, true}, {-1, 0, -0.25, false}}, true)
	chunkRoundTrip(t, [][3]uint8{{1, 2, 3}}, true)
	chunkRoundTrip(t, []string{"a", "bc"}, false)
	chunkRoundTrip(t, []celsius{-40, 100}, false)
	chunkRoundTrip(t, []*int{nil}, false)
	chunkRoundTrip(t, []int{}, true)
}

func TestChunkCodecRejectsWrongSizes(t *testing.T) {
	b, _ := EncodeChunk([]int64{1, 2, 3})
	if err := DecodeChunk(b, make([]int64, 2)); err == nil {
		t.Error("3 raw items decoded into 2")
	}
	if _, err := DecodeChunkAny[int64](b[:len(b)-1]); err == nil {
		t.Error("a partial raw item decoded")
	}
	c, _ := EncodeChunk([]string{"a", "b"})
	if err := DecodeChunk(c, make([]string, 3)); err == nil {
		t.Error("2 CBOR items decoded into 3")
	}
	if err := DecodeChunk([]byte{0xff}, make([]string, 1)); err == nil {
		t.Error("garbage decoded")
	}
}

// A raw chunk in aligned memory is used where it is; in unaligned memory
// (inside a larger message) it is copied out.
func TestChunkCodecAliasing(t *testing.T) {
	b, _ := EncodeChunk([]int64{7, 8, 9})
	got, err := DecodeChunkAny[int64](b)
	if err != nil || len(got) != 3 || &AsBytes(got)[0] != &b[0] {
		t.Fatalf("aligned chunk: %v, %v (aliases: %v)", got, err, err == nil && &AsBytes(got)[0] == &b[0])
	}
	odd := append([]byte{0}, b...)[1:]
	got, err = DecodeChunkAny[int64](odd)
	if err != nil || !reflect.DeepEqual(got, []int64{7, 8, 9}) {
		t.Fatalf("unaligned chunk: %v, %v", got, err)
	}
	if &AsBytes(got)[0] == &odd[0] {
		t.Fatal("unaligned chunk aliased")
	}
}

// Results narrower than the items may overwrite the items already read;
// wider ones get memory of their own.
func TestResultsInPlace(t *testing.T) {
	as := make([]int64, 1000)
	for i := range as {
		as[i] = int64(i) - 500
	}
	rs := ResultsInPlace[int64, int32](as)
	if &AsBytes(rs)[0] != &AsBytes(as)[0] {
		t.Fatal("narrower results not in place")
	}
	for i, a := range as {
		rs[i] = int32(3 * a)
	}
	for i, r := range rs {
		if r != int32(3*(i-500)) {
			t.Fatalf("result %d = %d", i, r)
		}
	}
	wide := ResultsInPlace[int32, int64]([]int32{1, 2})
	if len(wide) != 2 || wide[0] != 0 {
		t.Fatal("wider results: want fresh zeroed memory")
	}
	if s := ResultsInPlace[string, int]([]string{"a"}); len(s) != 1 {
		t.Fatal("results of CBOR items")
	}
}

// decodeStrings must agree with the codec on every chunk it takes, and
// leave to the codec every chunk it does not.
func checkDecodeStrings[T any](t *testing.T, b []byte) {
	t.Helper()
	fast, ok := decodeStrings[T](b)
	var slow []T
	err := Unmarshal(b, &slow)
	if ok && (err != nil || !reflect.DeepEqual(fast, slow)) {
		t.Fatalf("decodeStrings[%T](%x) = %#v; the codec: %#v, %v", *new(T), b, fast, slow, err)
	}
	if got, aerr := DecodeChunkAny[T](b); (aerr == nil) != (err == nil) || err == nil && !reflect.DeepEqual(got, slow) {
		t.Fatalf("decodeChunkAny[%T](%x) = %#v, %v; the codec: %#v, %v", *new(T), b, got, aerr, slow, err)
	}
}

type blob []byte

func TestChunkCodecStrings(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 70000)
	for _, items := range [][][]byte{{nil, {}, {1, 2, 3}, big}, {}, {big, big}} {
		b, err := EncodeChunk(items)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeStrings[[]byte](b); !ok {
			t.Fatalf("decodeStrings did not take %x", b[:min(len(b), 20)])
		}
		checkDecodeStrings[[]byte](t, b)
		checkDecodeStrings[blob](t, b)
		got, _ := DecodeChunkAny[[]byte](b)
		if len(got) > 0 && len(got[len(got)-1]) > 0 && &got[len(got)-1][0] == &b[len(b)-1] {
			t.Fatal("an item aliases the chunk's memory, which the worker uses again")
		}
	}
	b, _ := EncodeChunk([]string{"", "a", "héllo", string(big)})
	if _, ok := decodeStrings[string](b); !ok {
		t.Fatal("decodeStrings did not take strings")
	}
	checkDecodeStrings[string](t, b)
	for _, bad := range [][]byte{
		{0x82, 0x41, 0x01},             // one item short
		{0x81, 0x42, 0x01},             // item truncated
		{0x81, 0x41, 0x01, 0x00},       // extra data
		{0x9f, 0x41, 0x01, 0xff},       // indefinite array
		{0x81, 0x5f, 0x41, 0x01, 0xff}, // indefinite byte string
		{0x81, 0xc2, 0x41, 0x01},       // a tag
		{0x81, 0x61, 0xff},             // text that is not UTF-8
		{0x81, 0x61, 0x61},             // text where bytes are expected
		{0x81, 0x41, 0x61},             // bytes where text is expected
		{0x81, 0xf6},                   // null
		{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x41},
		{0x81, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{0x81, 0x1c}, {}, {0xf6},
	} {
		checkDecodeStrings[[]byte](t, bad)
		checkDecodeStrings[string](t, bad)
	}
}

func FuzzDecodeStrings(f *testing.F) {
	b1, _ := EncodeChunk([][]byte{nil, {}, {1, 2}})
	b2, _ := EncodeChunk([]string{"a", "héllo"})
	f.Add(b1)
	f.Add(b2)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeStrings[[]byte](t, b)
		checkDecodeStrings[string](t, b)
	})
}

//go:build linux

package codec

import (
	"reflect"
	"testing"
)

// The per-message type lookups and a small message's encode and decode,
// the codec's share of a Pipe round trip.

func BenchmarkHandleFree(b *testing.B) {
	t := reflect.TypeFor[[]int]()
	for b.Loop() {
		HandleFree(t, false)
		HandleFree(t, true)
	}
}

func BenchmarkRawChunks(b *testing.B) {
	for b.Loop() {
		// Two types in turn, as a pool looks up its items and results.
		RawChunks[int]()
		RawChunks[point]()
	}
}

func BenchmarkEncodeSmall(b *testing.B) {
	v := []any{int64(7), "small"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := EncodeMessage(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSmall(b *testing.B) {
	data, _, err := EncodeMessage([]any{int64(7), "small"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var v []any
		if _, err := DecodeMessage(data, nil, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// smallMsg is the shape of mp bench pipe_rtt's message.
type smallMsg struct {
	ID      int    `cbor:"id"`
	Payload string `cbor:"payload"`
}

func BenchmarkEncodeStruct(b *testing.B) {
	v := &smallMsg{ID: 1, Payload: "hello"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := EncodeMessage(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeStruct(b *testing.B) {
	data, _, err := EncodeMessage(&smallMsg{ID: 1, Payload: "hello"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var v smallMsg
		if _, err := DecodeMessage(data, nil, &v); err != nil {
			b.Fatal(err)
		}
	}
}

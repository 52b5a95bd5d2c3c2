//go:build linux

package pickle

import (
	"testing"

	ogórek "github.com/kisielk/og-rek"
)

// A manager request as CPython's client sends it: (ident, method, args, kwds).
var benchRequest = ogórek.Tuple{"7f3a2b1c", "__setitem__", ogórek.Tuple{"key-17", int64(42)}, dict()}

func BenchmarkDecodeRequest(b *testing.B) {
	data, err := Encode(benchRequest, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeRequest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(benchRequest, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

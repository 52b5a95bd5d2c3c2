//go:build linux

package pickle

import (
	"encoding/hex"
	"testing"
)

// TestDecodeManagerRequestAllocs: a request as CPython's manager client
// pickles it, (ident, method, args, kwds), decodes with few allocations:
// the decoder's stack, marks and memo are reused from one Decode to the
// next, and the short strs it repeats (the object's id, the method's
// name) are not made again: 11 allocations, where it took 25.
func TestDecodeManagerRequestAllocs(t *testing.T) {
	// pickle.dumps(('e9a347d82a40e5', '__setitem__', (42, 12345), {}), protocol=4)
	msg, err := hex.DecodeString("8004952c00000000000000288c0e6539613334376438326134306535948c0b5f5f7365746974656d5f5f944b2a4d393086947d9474942e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(msg, Options{}); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(1000, func() {
		if _, err := Decode(msg, Options{}); err != nil {
			t.Fatal(err)
		}
	})
	// With the race detector, sync.Pool drops a quarter of what it is
	// given, which costs a decoder made again now and then (14).
	if n > 15 {
		t.Fatalf("%v allocations to decode a manager request", n)
	}
	t.Logf("%v allocations", n)
}

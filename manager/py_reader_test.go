//go:build linux

package manager

import (
	"testing"

	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
)

// TestPyReaderIdents: a connection's requests are read with the ident
// and method each names, whichever decoder reads them: a request on
// object "b" with a keyword argument (which pickle.DecodeRequest leaves
// to the general decoder, after reading its ident) between requests of
// the common shape on "a" and then "b".
func TestPyReaderIdents(t *testing.T) {
	var rd pyReader
	for i, c := range []struct {
		ident, name string
		kw          bool
	}{
		{"a", "__getitem__", false},
		{"b", "get", true},
		{"b", "__len__", false},
		{"a", "__len__", false},
		{"a", "keys", false},
	} {
		kw := ogórek.NewDict()
		if c.kw {
			kw.Set("default", int64(1))
		}
		msg, err := pickle.Encode(ogórek.Tuple{c.ident, c.name, ogórek.Tuple{}, kw}, pickle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		req, err := rd.decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if req.ident != c.ident || req.name != c.name || req.args.nkw() != map[bool]int{true: 1}[c.kw] {
			t.Fatalf("request %d: read %v %q with %d keywords, sent %q %q", i, req.ident, req.name, req.args.nkw(), c.ident, c.name)
		}
	}
}

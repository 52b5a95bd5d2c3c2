//go:build linux

package connection_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/auth"
	"github.com/go-mp/mp/internal/logtest"
)

// TestHandshakeFailureLogged: a peer answers the listener's challenge with
// a wrong key. The listener's logger (its own, or else mp.SetLogger's)
// gets "mp: handshake failed" with the peer's address and the reason, and
// nothing it logs holds either key or the challenge.
func TestHandshakeFailureLogged(t *testing.T) {
	for _, own := range []bool{true, false} {
		name := "ListenConfig.Logger"
		if !own {
			name = "SetLogger"
		}
		t.Run(name, func(t *testing.T) {
			rec := logtest.New()
			var lc connection.ListenConfig
			if own {
				lc.Logger = rec.Logger()
			} else {
				mp.SetLogger(rec.Logger())
				defer mp.SetLogger(nil)
			}
			l, err := lc.Listen("tcp", "", testKey)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := within(t, 20*time.Second)
			nc, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			s := auth.Stream{RW: nc}
			challenge, err := s.RecvBytes(auth.MaxMessage)
			if err != nil {
				t.Fatal(err)
			}
			tag := []byte("#CHALLENGE#")
			if !bytes.HasPrefix(challenge, tag) {
				t.Fatalf("not a challenge: %q", challenge)
			}
			answer, err := auth.Response(wrongKey, challenge[len(tag):])
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SendBytes(answer); err != nil {
				t.Fatal(err)
			}
			s.RecvBytes(auth.MaxMessage) // #FAILURE#
			r, err := rec.Wait(ctx, "mp: handshake failed", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Str("remote"); got != nc.LocalAddr().String() {
				t.Errorf("remote %q, the peer was %s: %v", got, nc.LocalAddr(), r)
			}
			if !strings.Contains(r.Str("reason"), mp.ErrAuthentication.Error()) {
				t.Errorf("reason %q: %v", r.Str("reason"), r)
			}
			text := rec.Text()
			payload := challenge[len(tag)+len("{sha256}"):]
			for _, secret := range [][]byte{testKey, wrongKey, payload, answer[len("{sha256}"):]} {
				for _, form := range []string{string(secret), hex.EncodeToString(secret), fmt.Sprint(secret)} {
					if strings.Contains(text, form) {
						t.Fatalf("the log holds a secret (%q):\n%s", form, text)
					}
				}
			}
			// The listener serves on, and a good peer is not logged.
			c, err := connection.Dial(ctx, "tcp", l.Addr().String(), testKey)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if n := len(rec.Records()); n != 1 {
				t.Fatalf("%d records, want 1:\n%s", n, rec.Text())
			}
		})
	}
}

//go:build linux

package cluster

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
)

// A queue's consumer that the server refuses to make again each time
// (as while its deletion is under way there, for ever here): remake
// tries remakeTries times again, 10 ms apart, then returns the refusal,
// well before its ctx ends, rather than trying until then.
func TestRemakeBounded(t *testing.T) {
	c := startCluster(t, Options{})
	ctx := testCtx(t, 60*time.Second)
	st, err := newKVStore(ctx, c.conn, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	testHookQueueConsumer = func() error {
		attempts.Add(1)
		// As the server answers.
		return &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeConsumerDoesNotExist, Description: "consumer does not exist"}
	}
	t.Cleanup(func() { testHookQueueConsumer = nil })
	// remakeTries attempts again take 1 s and more; 20 s proves the bound.
	_, err = st.remake(testCtx(t, 20*time.Second), "q")
	var refused *jetstream.APIError
	if !errors.As(err, &refused) || refused.ErrorCode != jetstream.JSErrCodeConsumerDoesNotExist {
		t.Errorf("remake: %v, want the server's refusal", err)
	}
	if n := attempts.Load(); n != remakeTries+1 {
		t.Errorf("remake made %d attempts, want %d (the first and %d again)", n, remakeTries+1, remakeTries)
	}
}

// An Mp-Ack-To of the right prefix followed by digits and dots only is
// acknowledged if its tail is maxAckTail bytes long, and not (the pool's
// answer says it took the result only) if it is one byte longer: only
// that bound refuses it.
func TestAckToTailBound(t *testing.T) {
	c := startCluster(t, Options{})
	submitOnly(t, c, mp.PoolOptions{})
	s := sessionOf(t, c)
	nc := peerConn(t, c)
	own := taskAckPrefix(c.opts.Pool, s.fp)
	r := resultMsg{Job: 1 << 60, Kind: resOK}
	for _, tc := range []struct {
		tail   string
		answer []byte
	}{
		// maxAckTail (105) bytes, then 106.
		{"1" + strings.Repeat(".1", (maxAckTail-1)/2), answerAcked},
		{"11" + strings.Repeat(".1", (maxAckTail-1)/2), answerTook},
	} {
		h := nats.Header{ackToHeader: {own + tc.tail}}
		reply, err := nc.RequestMsg(&nats.Msg{Subject: directPrefix + s.inst, Data: r.appendTo(nil), Header: h}, 10*time.Second)
		if err != nil {
			t.Fatalf("a tail of %d bytes: %v", len(tc.tail), err)
		}
		if !bytes.Equal(reply.Data, tc.answer) {
			t.Errorf("a tail of %d bytes (bound %d): the pool answered %q, want %q", len(tc.tail), maxAckTail, reply.Data, tc.answer)
		}
	}
}

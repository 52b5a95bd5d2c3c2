//go:build linux

package mplog

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/logtest"
)

// TestRelayRoundTrip logs through a RelayHandler, with attributes of each
// kind, a group and With, and replays the records into a recorder: each
// arrives with its level, message and values of the same kind; a level
// the receiving logger does not enable is dropped.
func TestRelayRoundTrip(t *testing.T) {
	var wires []*Wire
	l := slog.New(NewRelayHandler(func(w *Wire) error { wires = append(wires, w); return nil }))
	when := time.Unix(1700000000, 5)
	l.With("pid", 42).WithGroup("g").Warn("event", "n", -3, "u", uint64(7), "f", 1.5, "b", true,
		"d", 2*time.Second, "t", when, "s", "text", "e", errValue{}, slog.Group("h", "x", 1))
	l.Debug("quiet")
	rec := logtest.New()
	to := slog.New(levelAtLeast{rec, slog.LevelInfo})
	for _, w := range wires {
		Replay(to, w)
	}
	rs := rec.Records()
	if len(rs) != 1 {
		t.Fatalf("%d records, want the Warn one only: %v", len(rs), rs)
	}
	r := rs[0]
	if r.Level != slog.LevelWarn || r.Msg != "event" {
		t.Fatalf("record %v", r)
	}
	want := map[string]any{"pid": int64(42), "g.n": int64(-3), "g.u": uint64(7), "g.f": 1.5, "g.b": true,
		"g.d": 2 * time.Second, "g.s": "text", "g.e": "an error", "g.h.x": int64(1)}
	for k, v := range want {
		if got := r.Attrs[k].Any(); got != v {
			t.Errorf("%s = %v (%T), want %v (%T)", k, got, got, v, v)
		}
	}
	if got := r.Attrs["g.t"].Time(); !got.Equal(when) {
		t.Errorf("t = %v, want %v", got, when)
	}
}

type errValue struct{}

func (errValue) String() string { return "an error" }

// levelAtLeast is h enabled from min on.
type levelAtLeast struct {
	*logtest.Recorder
	min slog.Level
}

func (h levelAtLeast) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

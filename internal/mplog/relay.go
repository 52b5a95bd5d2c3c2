//go:build linux

package mplog

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// Wire is a log record in a form that crosses processes: a child that
// serves its parent (a manager's server) logs through a RelayHandler,
// which gives each record as a Wire to a function that sends it, and the
// parent hands it to its logger with Replay. Attribute values keep their
// kind when they are numbers, booleans, durations or times, and become
// text otherwise; groups are flattened into keys "group.key".
type Wire struct {
	Time  time.Time
	Level int
	Msg   string
	Attrs []WireAttr
}

// WireAttr is an attribute of a Wire: Kind is the slog.Kind of the value,
// held in Int (Int64, Bool as 0 or 1, Duration in nanoseconds, Time in
// Unix nanoseconds), Uint, Float or Str (String, and any other kind, as
// slog.Value.String renders it).
type WireAttr struct {
	Key   string
	Kind  int
	Int   int64
	Uint  uint64
	Float float64
	Str   string
}

func toWire(key string, v slog.Value) WireAttr {
	a := WireAttr{Key: key, Kind: int(v.Kind())}
	switch v.Kind() {
	case slog.KindInt64:
		a.Int = v.Int64()
	case slog.KindUint64:
		a.Uint = v.Uint64()
	case slog.KindFloat64:
		a.Float = v.Float64()
	case slog.KindBool:
		if v.Bool() {
			a.Int = 1
		}
	case slog.KindDuration:
		a.Int = int64(v.Duration())
	case slog.KindTime:
		a.Int = v.Time().UnixNano()
	default:
		a.Kind, a.Str = int(slog.KindString), v.String()
	}
	return a
}

// attr rebuilds the attribute; an unknown kind (from a peer that is not
// ours) comes back as text.
func (a WireAttr) attr() slog.Attr {
	switch slog.Kind(a.Kind) {
	case slog.KindInt64:
		return slog.Int64(a.Key, a.Int)
	case slog.KindUint64:
		return slog.Uint64(a.Key, a.Uint)
	case slog.KindFloat64:
		return slog.Float64(a.Key, a.Float)
	case slog.KindBool:
		return slog.Bool(a.Key, a.Int != 0)
	case slog.KindDuration:
		return slog.Duration(a.Key, time.Duration(a.Int))
	case slog.KindTime:
		return slog.Time(a.Key, time.Unix(0, a.Int))
	}
	return slog.String(a.Key, a.Str)
}

// flatten appends a's attributes to out as WireAttrs, a group's under
// prefix "group.".
func flatten(out []WireAttr, prefix string, a slog.Attr) []WireAttr {
	v := a.Value.Resolve()
	if v.Kind() != slog.KindGroup {
		return append(out, toWire(prefix+a.Key, v))
	}
	if a.Key != "" {
		prefix += a.Key + "."
	}
	for _, g := range v.Group() {
		out = flatten(out, prefix, g)
	}
	return out
}

// RelayHandler is a slog.Handler that gives every record, at every level
// (the receiving side's logger filters), to a send function.
type RelayHandler struct {
	send   func(*Wire) error
	attrs  []WireAttr
	prefix string
}

// NewRelayHandler returns a handler that passes each record to send,
// which must be safe to call from several goroutines at once.
func NewRelayHandler(send func(*Wire) error) *RelayHandler {
	return &RelayHandler{send: send}
}

// Enabled reports true: the receiving side filters.
func (h *RelayHandler) Enabled(context.Context, slog.Level) bool { return true }

// Handle sends r.
func (h *RelayHandler) Handle(_ context.Context, r slog.Record) error {
	w := &Wire{Time: r.Time, Level: int(r.Level), Msg: r.Message, Attrs: slices.Clone(h.attrs)}
	r.Attrs(func(a slog.Attr) bool {
		w.Attrs = flatten(w.Attrs, h.prefix, a)
		return true
	})
	return h.send(w)
}

// WithAttrs returns a handler that sends attrs with each record too.
func (h *RelayHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = slices.Clone(h.attrs)
	for _, a := range attrs {
		n.attrs = flatten(n.attrs, h.prefix, a)
	}
	return &n
}

// WithGroup returns a handler that puts the keys of later attributes
// under name.
func (h *RelayHandler) WithGroup(name string) slog.Handler {
	n := *h
	if name != "" {
		n.prefix = h.prefix + name + "."
	}
	return &n
}

// Replay hands w to l's handler, if l is enabled at w's level.
func Replay(l *slog.Logger, w *Wire) {
	ctx := context.Background()
	h := l.Handler()
	if !h.Enabled(ctx, slog.Level(w.Level)) {
		return
	}
	r := slog.NewRecord(w.Time, slog.Level(w.Level), w.Msg, 0)
	for _, a := range w.Attrs {
		r.AddAttrs(a.attr())
	}
	h.Handle(ctx, r)
}

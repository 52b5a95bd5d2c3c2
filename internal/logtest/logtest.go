//go:build linux

// Package logtest records what is logged through log/slog, for the tests
// of mp's events (mp.SetLogger and the Logger fields of options): a
// handler that keeps every record in memory, and a way to wait for one.
package logtest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Record is a record as the Recorder kept it.
type Record struct {
	Level slog.Level
	Msg   string
	// Attrs holds the record's attributes and those the logger was given
	// (With), resolved, by key; a group's attributes are under
	// "group.key".
	Attrs map[string]slog.Value
}

// Int returns attribute key as an int64 (an unsigned one converted), and
// whether the record has it as a number.
func (r Record) Int(key string) (int64, bool) {
	v, ok := r.Attrs[key]
	switch {
	case !ok:
		return 0, false
	case v.Kind() == slog.KindInt64:
		return v.Int64(), true
	case v.Kind() == slog.KindUint64:
		return int64(v.Uint64()), true
	}
	return 0, false
}

// Str returns attribute key as text ("" if the record lacks it).
func (r Record) Str(key string) string {
	if v, ok := r.Attrs[key]; ok {
		return v.String()
	}
	return ""
}

// String renders the record on one line, its attributes sorted by key.
func (r Record) String() string {
	keys := make([]string, 0, len(r.Attrs))
	for k := range r.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%v %q", r.Level, r.Msg)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, r.Attrs[k])
	}
	return b.String()
}

// store is what a Recorder and the handlers it derives share.
type store struct {
	mu      sync.Mutex
	records []Record
	changed chan struct{} // closed, and replaced, when a record comes
}

// Recorder is a slog.Handler that keeps every record, at every level.
type Recorder struct {
	s      *store
	attrs  []slog.Attr // from WithAttrs, with their group prefix applied
	prefix string      // from WithGroup: "g." or ""
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{s: &store{changed: make(chan struct{})}} }

// Logger returns a logger that writes to r.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r) }

// Enabled reports true: every level is recorded.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle records rec.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	out := Record{Level: rec.Level, Msg: rec.Message, Attrs: map[string]slog.Value{}}
	for _, a := range r.attrs {
		addAttr(out.Attrs, "", a)
	}
	rec.Attrs(func(a slog.Attr) bool {
		addAttr(out.Attrs, r.prefix, a)
		return true
	})
	r.s.mu.Lock()
	r.s.records = append(r.s.records, out)
	close(r.s.changed)
	r.s.changed = make(chan struct{})
	r.s.mu.Unlock()
	return nil
}

func addAttr(m map[string]slog.Value, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			addAttr(m, p, g)
		}
		return
	}
	m[prefix+a.Key] = v
}

// WithAttrs returns a handler that records into r's store with attrs too.
func (r *Recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *r
	n.attrs = slices.Clone(r.attrs)
	for _, a := range attrs {
		a.Key = r.prefix + a.Key
		n.attrs = append(n.attrs, a)
	}
	return &n
}

// WithGroup returns a handler that records into r's store with the keys
// of later attributes under name.
func (r *Recorder) WithGroup(name string) slog.Handler {
	n := *r
	if name != "" {
		n.prefix = r.prefix + name + "."
	}
	return &n
}

// Records returns the records so far, oldest first.
func (r *Recorder) Records() []Record {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return slices.Clone(r.s.records)
}

// Text renders every record so far, one per line: for checking that
// something (a key) appears nowhere in what was logged.
func (r *Recorder) Text() string {
	var b strings.Builder
	for _, rec := range r.Records() {
		b.WriteString(rec.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Wait returns the first record whose message is msg and that match, if
// not nil, accepts, waiting for it until ctx is done. The error then
// lists the records there were.
func (r *Recorder) Wait(ctx context.Context, msg string, match func(Record) bool) (Record, error) {
	for {
		r.s.mu.Lock()
		for _, rec := range r.s.records {
			if rec.Msg == msg && (match == nil || match(rec)) {
				r.s.mu.Unlock()
				return rec, nil
			}
		}
		changed := r.s.changed
		r.s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Record{}, fmt.Errorf("no record %q: %w; the records:\n%s", msg, ctx.Err(), r.Text())
		}
	}
}

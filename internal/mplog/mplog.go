//go:build linux

// Package mplog holds the logger that mp and its subpackages write to:
// one home for it, so that mp.SetLogger reaches the manager and the
// connection packages too, which cannot import the root package's
// internals.
package mplog

import (
	"log/slog"
	"sync/atomic"
)

// discard drops every record, cheaply: Enabled reports false, so callers
// that check it (slog's methods do) build no record at all.
var discard = slog.New(slog.DiscardHandler)

var current atomic.Pointer[slog.Logger]

// Set makes l the logger; nil restores the default, which discards.
func Set(l *slog.Logger) {
	if l == nil {
		l = discard
	}
	current.Store(l)
}

// Get returns the logger set last, or one that discards.
func Get() *slog.Logger {
	if l := current.Load(); l != nil {
		return l
	}
	return discard
}

// Or returns l if it is not nil, else the logger set with Set: for the
// Logger fields of options, which take precedence over the global one.
func Or(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return Get()
}

//go:build linux

package mplog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestSetGetOr(t *testing.T) {
	defer Set(nil)
	if Get().Enabled(t.Context(), slog.LevelError) {
		t.Fatal("the default logger is enabled; it should discard")
	}
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	Set(l)
	Get().Info("hello", "k", 1)
	if !strings.Contains(buf.String(), "hello") {
		t.Fatalf("the set logger did not get the record: %q", buf.String())
	}
	var own bytes.Buffer
	o := slog.New(slog.NewTextHandler(&own, nil))
	if Or(o) != o || Or(nil) != l {
		t.Fatal("Or prefers the option's logger, else the global one")
	}
	Set(nil)
	if Get().Enabled(t.Context(), slog.LevelError) {
		t.Fatal("Set(nil) did not restore the discarding default")
	}
}

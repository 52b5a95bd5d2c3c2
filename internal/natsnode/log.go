//go:build linux

package natsnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// logAdapter is the server's Logger, writing to an slog.Logger. It also
// keeps the first fatal message: the server reports a failed start (a
// port in use, a store it cannot write) only by logging it.
type logAdapter struct {
	l *slog.Logger

	mu       sync.Mutex
	fatalErr error
}

func newLogAdapter(l *slog.Logger) *logAdapter { return &logAdapter{l: l} }

func (a *logAdapter) log(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if a.l.Enabled(ctx, level) {
		a.l.Log(ctx, level, fmt.Sprintf(format, v...))
	}
}

// levelTrace is below Debug: trace is the server's most verbose level.
const levelTrace = slog.LevelDebug - 4

func (a *logAdapter) Noticef(format string, v ...any) { a.log(slog.LevelInfo, format, v) }
func (a *logAdapter) Warnf(format string, v ...any)   { a.log(slog.LevelWarn, format, v) }
func (a *logAdapter) Errorf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a *logAdapter) Debugf(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }
func (a *logAdapter) Tracef(format string, v ...any)  { a.log(levelTrace, format, v) }

// Fatalf logs at Error and records the error; unlike the server's own
// logger it does not exit the process, which is not the server's.
func (a *logAdapter) Fatalf(format string, v ...any) {
	a.log(slog.LevelError, format, v)
	a.mu.Lock()
	if a.fatalErr == nil {
		a.fatalErr = errors.New("natsnode: " + fmt.Sprintf(format, v...))
	}
	a.mu.Unlock()
}

// fatal returns the first fatal error logged, nil if none.
func (a *logAdapter) fatal() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatalErr
}

// randomHex returns 8 random bytes in hex, for default names.
func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

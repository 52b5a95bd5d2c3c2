//go:build linux

package mp

import (
	"log/slog"

	"github.com/go-mp/mp/internal/mplog"
)

// SetLogger makes l the logger that mp and its subpackages (manager,
// connection) report events to: a pool worker replaced and why, a
// handshake that failed, a manager client that died and what was given
// back for it. Records carry their details as attributes, never an
// authentication key. The default discards everything; nil restores it.
// Options that have a Logger field use theirs instead.
//
// The logger is per process: a child process starts with the default,
// and a program that wants its children to log calls SetLogger in them
// too (in main before mp.Main, or in an initializer).
func SetLogger(l *slog.Logger) { mplog.Set(l) }

//go:build linux

package connection

import "time"

// LiveBridges is the number of TLS bridges whose goroutines have not all
// ended.
func LiveBridges() int64 { return liveBridges.Load() }

// SetBridgeLinger sets bridgeLinger for the bridges started from now on
// and returns what restores it.
func SetBridgeLinger(d time.Duration) (restore func()) {
	old := bridgeLinger
	bridgeLinger = d
	return func() { bridgeLinger = old }
}

//go:build linux

package connection

// MaxHandshakes is maxHandshakes, for the tests.
const MaxHandshakes = maxHandshakes

//go:build linux && !race

package mp

// raceEnabled says that the race detector is on.
const raceEnabled = false

//go:build linux && race

package mp

// raceEnabled says that the race detector is on: the mutex then adds the
// happens-before edges it cannot see through shared memory.
const raceEnabled = true

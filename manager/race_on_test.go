//go:build linux && race

package manager_test

// raceEnabled says that the tests run with the race detector, which slows
// them several times: the long loops run fewer rounds.
const raceEnabled = true

//go:build linux && race

package mp_test

const raceEnabled = true

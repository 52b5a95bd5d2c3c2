//go:build linux && race

package main

// raceEnabled builds the example with the race detector when the test runs
// with it, so that a race in a parent or a child fails the test.
const raceEnabled = true

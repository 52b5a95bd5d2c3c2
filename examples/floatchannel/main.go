//go:build linux

// Command floatchannel sends messages of floats to a child through shared memory and semaphores.
// Run it with: go run ./examples/floatchannel
package main

import (
	"context"
	"log"
	"os"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/examples/scenarios"
)

func main() {
	mp.Main() // first: in a child, runs the target and exits

	if err := scenarios.FloatChannelScenario(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

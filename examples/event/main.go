//go:build linux

// Command event wakes processes waiting on a shared Event.
// Run it with: go run ./examples/event
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

	if err := scenarios.EventSignal(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

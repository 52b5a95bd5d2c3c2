//go:build linux

// Command barrier runs ten processes through a five-party barrier with an action.
// Run it with: go run ./examples/barrier
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

	if err := scenarios.Barrier(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

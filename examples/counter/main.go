//go:build linux

// Command counter increments and decrements a shared Value from two processes.
// Run it with: go run ./examples/counter
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

	if err := scenarios.SharedCounter(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command runner starts two processes with different delays, struct and Run style.
// Run it with: go run ./examples/runner
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

	if err := scenarios.TwoRunners(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

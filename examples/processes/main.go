//go:build linux

// Command processes starts two processes with different delays, function style.
// Run it with: go run ./examples/processes
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

	if err := scenarios.TwoProcesses(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

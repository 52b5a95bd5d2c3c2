//go:build linux

// Command poolvsprocs runs one example of mp: a pool of 4 against 100 processes.
// Run it with: go run ./examples/poolvsprocs
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

	if err := scenarios.PoolVsProcesses(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command executor runs one example of mp: an executor: submit, map, as_completed, callbacks, shutdown.
// Run it with: go run ./examples/executor
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

	if err := scenarios.Executor(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

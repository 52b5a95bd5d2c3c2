//go:build linux

// Command apply runs one example of mp: a synchronous apply in a pool.
// Run it with: go run ./examples/apply
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

	if err := scenarios.Apply(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

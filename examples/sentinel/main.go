//go:build linux

// Command sentinel runs a producer and a consumer on a Queue ended by a sentinel.
// Run it with: go run ./examples/sentinel
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

	if err := scenarios.Sentinel(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

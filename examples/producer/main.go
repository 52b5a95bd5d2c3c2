//go:build linux

// Command producer runs a producer and a consumer on a pipe until EOF.
// Run it with: go run ./examples/producer
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

	if err := scenarios.ProducerConsumer(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command tenconsumers shares the items of a JoinableQueue among ten consumers.
// Run it with: go run ./examples/tenconsumers
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

	if err := scenarios.TenConsumers(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command initializer runs one example of mp: a pool with an initializer and max tasks per child.
// Run it with: go run ./examples/initializer
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

	if err := scenarios.Initializer(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

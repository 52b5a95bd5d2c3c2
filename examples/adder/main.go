//go:build linux

// Command adder runs an adder server on a duplex pipe.
// Run it with: go run ./examples/adder
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

	if err := scenarios.Adder(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

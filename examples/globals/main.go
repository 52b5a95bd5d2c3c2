//go:build linux

// Command globals shows that package-level variables are not shared between processes.
// Run it with: go run ./examples/globals
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

	if err := scenarios.Globals(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

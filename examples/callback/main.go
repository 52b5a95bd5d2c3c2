//go:build linux

// Command callback runs one example of mp: apply_async with callbacks that run in the parent.
// Run it with: go run ./examples/callback
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

	if err := scenarios.Callback(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

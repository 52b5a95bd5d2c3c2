//go:build linux

// Command applyasync runs one example of mp: apply_async, then close, join and get.
// Run it with: go run ./examples/applyasync
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

	if err := scenarios.ApplyAsyncCloseJoin(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command lockpids runs workers through a critical section guarded by a shared Lock.
// Run it with: go run ./examples/lockpids
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

	if err := scenarios.LockPids(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command joinable serves a JoinableQueue with a daemon consumer and waits with Join.
// Run it with: go run ./examples/joinable
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

	if err := scenarios.Joinable(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

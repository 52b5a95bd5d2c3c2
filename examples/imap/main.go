//go:build linux

// Command imap runs one example of mp: imap against imap_unordered.
// Run it with: go run ./examples/imap
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

	if err := scenarios.Imap(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command digest runs one example of mp: SHA-512 of every file under a directory with imap_unordered.
// Run it with: go run ./examples/digest
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

	if err := scenarios.Digest(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

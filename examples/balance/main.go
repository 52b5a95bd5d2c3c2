//go:build linux

// Command balance balances a fast producer and slow consumers with a bounded Queue.
// Run it with: go run ./examples/balance
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

	if err := scenarios.Balance(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

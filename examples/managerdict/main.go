//go:build linux

// Command managerdict has ten workers write their pid into a Dict and a List held by a manager process.
// Run it with: go run ./examples/managerdict
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

	if err := scenarios.ManagerDict(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

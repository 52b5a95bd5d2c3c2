//go:build linux

// Command managerlock increments and decrements a manager Value from two processes under a manager Lock.
// Run it with: go run ./examples/managerlock
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

	if err := scenarios.ManagerLock(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command managervalue has two children add 5 and 10 to a Value held by a manager process.
// Run it with: go run ./examples/managervalue
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

	if err := scenarios.ManagerValue(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

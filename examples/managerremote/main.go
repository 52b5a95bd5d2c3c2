//go:build linux

// Command managerremote serves a queue over TCP and has another program put jobs into it.
// Run it with: go run ./examples/managerremote
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

	if err := scenarios.ManagerRemote(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

//go:build linux

// Command tour runs every example of mp, one after another, each under a
// heading. Name scenarios to run only those:
//
//	go run ./examples/tour
//	go run ./examples/tour globals adder
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/examples/scenarios"
)

func main() {
	mp.Main() // first: in a child, runs the target and exits

	log.SetFlags(0)
	if err := tour(os.Args[1:]); err != nil {
		log.Fatal(err)
	}
}

func tour(only []string) error {
	for _, name := range only {
		if !slices.ContainsFunc(scenarios.All, func(s scenarios.Scenario) bool { return s.Name == name }) {
			return fmt.Errorf("tour: no scenario %q", name)
		}
	}
	first := true
	for _, s := range scenarios.All {
		if len(only) > 0 && !slices.Contains(only, s.Name) {
			continue
		}
		if !first {
			fmt.Println()
		}
		first = false
		fmt.Printf("== %s: %s ==\n", s.Name, s.Title)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := s.Run(ctx, os.Stdout)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return nil
}

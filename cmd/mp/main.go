// Command mp is the command-line companion of the mp library.
//
//	mp bench [-json] [-scale f] [-growth] [workload ...]
//
// runs the workloads of DESIGN.md §5 (all of them when none is named) and
// prints one line per figure: name, value and unit separated by tabs, or
// with -json one {"name":…,"value":…,"unit":…} object per line, the format
// of shared/bench/py_baseline.py. With -growth it runs instead the
// workloads that measure how costs grow with the work (large items, many
// clients, many objects), whose CPython side is bench/py_growth.py.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/bench"
)

func main() {
	mp.Main()
	if os.Getenv(bench.BareEnv) != "" {
		return // the reference of the spawn workload
	}
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "bench":
		os.Exit(runBench(os.Args[2:], os.Stdout, os.Stderr))
	case "manager":
		os.Exit(runManager(os.Args[2:], os.Stdout, os.Stderr))
	case "help", "-h", "-help", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "mp: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: mp bench [-json] [-scale f] [-growth] [workload ...]\n       mp manager serve|put|get|stats [flags] (mp manager help)\nworkloads: %s\ngrowth workloads (-growth): %s\n",
		strings.Join(bench.Names(false), " "), strings.Join(bench.Names(true), " "))
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	scale := fs.Float64("scale", 1, "shrink iteration counts by this factor (0 < f ≤ 1)")
	growth := fs.Bool("growth", false, "run the workloads that measure how costs grow with the work (minutes)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *scale <= 0 || *scale > 1 {
		fmt.Fprintln(stderr, "mp bench: -scale must be in (0, 1]")
		return 2
	}
	names := fs.Args()
	if len(names) == 0 {
		names = bench.Names(*growth)
	}
	var ws []bench.Workload
	for _, n := range names {
		w, ok := bench.Lookup(n)
		if !ok {
			fmt.Fprintf(stderr, "mp bench: unknown workload %q (have: %s)\n", n, strings.Join(append(bench.Names(false), bench.Names(true)...), " "))
			return 2
		}
		ws = append(ws, w)
	}
	status := 0
	for _, w := range ws {
		rs, err := w.Run(*scale)
		if err != nil {
			fmt.Fprintf(stderr, "mp bench: %s: %v\n", w.Name, err)
			status = 1
			continue
		}
		for _, r := range rs {
			bench.Emit(stdout, r, *asJSON)
		}
	}
	return status
}

//go:build linux

// Command mp is the command-line companion of the mp library: it measures
// the library (bench), serves, feeds and inspects manager servers from
// the shell (manager), and runs and inspects the JetStream nodes that
// pools across machines share (cluster).
//
// Usage:
//
//	mp bench [-json] [-scale f] [-growth] [workload ...]
//	mp manager serve [-addr host:port | -unix path] [-authkey-file file] [-handshake-timeout d] [-python] [TLS flags]
//	mp manager put   [-addr host:port | -unix path] [-authkey-file file] [TLS flags] -queue name item...
//	mp manager get   [-addr host:port | -unix path] [-authkey-file file] [TLS flags] -queue name [-n count] [-timeout d]
//	mp manager stats [-addr host:port | -unix path] [-authkey-file file] [TLS flags]
//	mp cluster serve  [-v] [-listen host:port] [-store dir] [-name name] [-cluster-listen host:port -routes host:port,... [-cluster-name name]]
//	                  [-authkey-file file | -nkeys file] [-tls-cert file -tls-key file [-tls-ca file]]
//	mp cluster status -url nats://host:port [-authkey-file file | -nkey-seed file] [TLS flags] [-timeout d] [-workers d]
//	mp cluster token  [-authkey-file file]
//	mp help [command]
//	mp version
//
// mp bench runs the benchmark workloads (all of them when none is named)
// and prints one line per figure: name, value and unit separated by tabs,
// or with -json one {"name":…,"value":…,"unit":…} object per line.
// -scale f (0 < f ≤ 1, default 1) shrinks the iteration counts. With
// -growth it runs instead the workloads that measure how costs grow with
// the work (large items, many clients, many objects); they take minutes,
// and bench/py_growth.py measures the same in CPython. `mp help bench`
// lists the workloads.
//
// mp manager serve runs a manager server of the SyncManager types (package
// manager) until interrupted, listening on -addr (TCP, 127.0.0.1:0 by
// default: a free port) or -unix (a unix socket path); it prints "serving
// on NETWORK ADDRESS" first. Programs use it with manager.Connect; with
// -python, CPython's SyncManager clients too (they meet Go's named objects
// through BaseManager.register("get_NAME")). mp
// manager put puts its arguments, as strings, on the server's queue named
// by -queue (made if need be); mp manager get gets -n items from it (1 by
// default) and prints them one per line, waiting at most -timeout (0, the
// default: for ever); mp manager stats prints how many objects, clients
// and waiting calls the server has.
//
// The authkey is read from -authkey-file, else from the environment
// variable MP_AUTHKEY: text that starts with "hex:" is hexadecimal, any
// other is the key byte for byte. A server off loopback must be given a
// key; on loopback or a unix socket, serve makes a random one when none is
// given and prints it. serve drops a connection that has not authenticated
// within -handshake-timeout (10s by default). -tls-cert and -tls-key serve
// TLS, and -tls-ca then requires client certificates signed by that CA;
// the other commands connect with TLS when given -tls, -tls-ca or
// -tls-cert and -tls-key. `mp help manager` says more.
//
// mp cluster serve runs a NATS server with JetStream (an embedded
// nats-server) until interrupted, for pools of package cluster spread over
// machines: clients connect to -listen (127.0.0.1:4222 by default),
// JetStream keeps its files in -store (a temporary directory removed at
// exit by default), and -name names the server (mp-HOST-PORT by default).
// A cluster of 3 nodes is each started with -cluster-listen, where the
// others reach it, and -routes, every node's -cluster-listen, under one
// -cluster-name ("mp"). With an authkey, clients and routes must present
// the token derived from it, which mp cluster token prints; -nkeys instead
// names a file of the users' public nkeys. Without either, serve refuses
// to listen off loopback. The TLS flags serve clients with TLS, as for mp
// manager serve. The server's warnings and errors go to stderr, with -v
// its notices too. mp cluster status prints the streams of the node at -url
// with their consumers: tasks pending and running, redeliveries, and
// workers waiting for tasks; then each pool's tasks queued and running,
// and the workers heard from within -workers (2s); it authenticates with
// the authkey or the seed in -nkey-seed, connects with TLS as mp
// manager's clients do, and gives up after -timeout (10s).
//
// mp help prints this usage, with every flag and its default; mp help
// COMMAND (or mp COMMAND -h) prints that command's. mp version prints the
// version of module github.com/go-mp/mp the command was built from,
// "(devel)" when the build does not record one.
//
// mp, like the library, runs on Linux only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/bench"
)

func main() {
	mp.Main()
	if os.Getenv(bench.BareEnv) != "" {
		return // the reference of the spawn workload
	}
	if url := os.Getenv(bench.FloorEnv); url != "" {
		os.Exit(bench.FloorWorker(url)) // the reference of cluster_apply_sync
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs mp with the arguments after the program name and returns the
// exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "bench":
		return runBench(rest, stdout, stderr)
	case "manager":
		return runManager(rest, stdout, stderr)
	case "cluster":
		return runCluster(rest, stdout, stderr)
	case "version":
		if len(rest) == 1 && isHelpFlag(rest[0]) {
			fmt.Fprint(stdout, versionUsage)
			return 0
		}
		if len(rest) > 0 {
			fmt.Fprint(stderr, versionUsage)
			return 2
		}
		fmt.Fprintf(stdout, "mp %s\n", moduleVersion(debug.ReadBuildInfo()))
		return 0
	case "help", "-h", "-help", "--help":
		return runHelp(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "mp: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
}

const versionUsage = "usage: mp version\n\nprints the version of module github.com/go-mp/mp this mp was built from, (devel) when the build does not record one.\n"

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

// runHelp runs `mp help [command]`.
func runHelp(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stdout)
		return 0
	case args[0] == "bench" && len(args) == 1:
		benchUsage(stdout)
		return 0
	case args[0] == "manager" && len(args) <= 2:
		if len(args) == 1 {
			managerHelp(stdout)
			return 0
		}
		if mf := newManagerFlags(args[1]); mf != nil {
			mf.usage(stdout)
			return 0
		}
	case args[0] == "cluster" && len(args) <= 2:
		if len(args) == 1 {
			clusterHelp(stdout)
			return 0
		}
		if cf := newClusterFlags(args[1]); cf != nil {
			cf.usage(stdout)
			return 0
		}
	case args[0] == "version" && len(args) == 1:
		fmt.Fprint(stdout, versionUsage)
		return 0
	case args[0] == "help" && len(args) == 1:
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "mp help: unknown command %q\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

// usage prints the commands, each with its flags and their defaults.
func usage(w io.Writer) {
	fmt.Fprint(w, `mp is the command-line companion of the mp library (Linux only).

usage:
  mp bench [-json] [-scale f] [-growth] [workload ...]   run benchmark workloads
  mp manager serve|put|get|stats [flags]                serve, feed or inspect a manager server
  mp cluster serve|status|token [flags]                 run or inspect a JetStream node for cluster pools
  mp help [command]                                     print this, or a command's usage
  mp version                                            print the module version

`)
	benchUsage(w)
	for _, cmd := range managerCommands {
		fmt.Fprintln(w)
		newManagerFlags(cmd).usage(w)
	}
	for _, cmd := range clusterCommands {
		fmt.Fprintln(w)
		newClusterFlags(cmd).usage(w)
	}
	fmt.Fprint(w, "\nRun 'mp help manager' and 'mp help cluster' for the authkey and TLS.\n")
}

// parseFlags parses args with fs. Asked for help (-h), it prints usage to
// stdout and returns status 0; on a bad flag, it prints the error and
// usage to stderr and returns 2; ok reports that neither happened.
func parseFlags(fs *flag.FlagSet, args []string, usage func(io.Writer), stdout, stderr io.Writer) (status int, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, to the right stream
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout)
		return 0, false
	case err != nil:
		usage(stderr)
		return 2, false
	}
	return 0, true
}

// printFlags prints fs's flags and their defaults.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// modulePath is the module whose version `mp version` prints.
const modulePath = "github.com/go-mp/mp"

// moduleVersion returns the version of modulePath recorded in the build
// (info, ok are debug.ReadBuildInfo's), "(devel)" when there is none.
func moduleVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "(devel)"
	}
	m := &info.Main
	if m.Path != modulePath {
		// Built as part of another main module (a workspace).
		m = nil
		for _, d := range info.Deps {
			if d.Path == modulePath {
				m = d
				if d.Replace != nil {
					m = d.Replace
				}
			}
		}
	}
	if m == nil || m.Version == "" {
		return "(devel)"
	}
	return m.Version
}

// benchFlags are the flags of `mp bench`.
type benchFlags struct {
	fs     *flag.FlagSet
	asJSON *bool
	scale  *float64
	growth *bool
}

func newBenchFlags() *benchFlags {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	return &benchFlags{
		fs:     fs,
		asJSON: fs.Bool("json", false, "print one JSON object per line"),
		scale:  fs.Float64("scale", 1, "shrink iteration counts by this factor (0 < f ≤ 1)"),
		growth: fs.Bool("growth", false, "run the workloads that measure how costs grow with the work (minutes)"),
	}
}

// benchUsage prints the usage of `mp bench`, its flags and its workloads.
func benchUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: mp bench [-json] [-scale f] [-growth] [workload ...]\n\nflags of mp bench:\n")
	printFlags(w, newBenchFlags().fs)
	fmt.Fprintf(w, "workloads: %s\ngrowth workloads (-growth): %s\n",
		strings.Join(bench.Names(false), " "), strings.Join(bench.Names(true), " "))
}

func runBench(args []string, stdout, stderr io.Writer) int {
	bf := newBenchFlags()
	if status, ok := parseFlags(bf.fs, args, benchUsage, stdout, stderr); !ok {
		return status
	}
	if *bf.scale <= 0 || *bf.scale > 1 {
		fmt.Fprintln(stderr, "mp bench: -scale must be in (0, 1]")
		return 2
	}
	names := bf.fs.Args()
	if len(names) == 0 {
		names = bench.Names(*bf.growth)
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
	if len(ws) > 1 && benchApart {
		return benchEach(ws, *bf.scale, *bf.asJSON, stdout, stderr)
	}
	status := 0
	for _, w := range ws {
		rs, err := w.Run(*bf.scale)
		if err != nil {
			fmt.Fprintf(stderr, "mp bench: %s: %v\n", w.Name, err)
			status = 1
			continue
		}
		for _, r := range rs {
			bench.Emit(stdout, r, *bf.asJSON)
		}
	}
	return status
}

// benchApart says whether several workloads run in processes of their
// own (see benchEach). Tests that call runBench turn it off: there this
// binary is the test binary, which does not know `mp bench`.
var benchApart = true

// benchEach runs each workload of several in a process of its own (this
// binary, running `mp bench` on that one), as pyperf runs each benchmark
// in fresh processes: what one workload leaves behind in a process (a
// large heap that the runtime is still giving back to the system,
// children still exiting) would weigh on the next (queue_size at 64 KiB
// right after map_var: 26 k items/s, against 37 run alone).
func benchEach(ws []bench.Workload, scale float64, asJSON bool, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mp bench: %v\n", err)
		return 1
	}
	status := 0
	for _, w := range ws {
		args := []string{"bench", "-scale", strconv.FormatFloat(scale, 'g', -1, 64)}
		if asJSON {
			args = append(args, "-json")
		}
		cmd := exec.Command(exe, append(args, w.Name)...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				fmt.Fprintf(stderr, "mp bench: %s: %v\n", w.Name, err)
			}
			status = 1
		}
	}
	return status
}

//go:build linux

// Package mp brings Python's multiprocessing to Go: child processes that run
// registered Go functions, pipes and connections between them, and locks and
// shared memory that work across processes. The Listener and Client of
// CPython's multiprocessing.connection, wire-compatible with it, are in
// package [github.com/go-mp/mp/connection].
//
// mp runs on Linux only: a build for any other GOOS fails, with the one
// error "undefined: mp_runs_only_on_Linux".
//
// A program that uses mp calls [Main] as the first line of main (and of
// TestMain in tests). The child is the same binary re-executed: in a child,
// Main runs the requested target and exits; in the parent it returns.
//
//	var greet = mp.RegisterProc("greet", func(name string) error {
//		fmt.Println("hello", name)
//		return nil
//	})
//
//	func main() {
//		mp.Main()
//		p := mp.NewProcess(greet, "bob")
//		if err := p.Start(); err != nil { ... }
//		err := p.Join(context.Background())
//	}
//
// Only registered targets can run in a child: nothing received from a
// socket is ever executed. Arguments and results travel over an inherited
// unix socket encoded with CBOR; a [Conn] inside the arguments arrives in
// the child as a working connection (its descriptor is passed with
// SCM_RIGHTS).
//
// # Children and the end of the parent
//
// Every child is reaped by mp whether or not Join is called, so no zombie
// is left. Each child holds a lifeline to its parent: when the parent
// process ends in any way (returning from main, os.Exit, a crash or
// SIGKILL), its daemon children exit at once. Go has no hook that runs when
// main returns, so unlike Python the main process does not join its
// non-daemon children on exit: they run to completion as orphans. Join them
// (see [ActiveChildren]) before main returns if the program must wait for
// them. A child process, whose exit mp controls, does join its own
// non-daemon children before it exits, as Python does.
package mp

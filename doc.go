//go:build linux

// Package mp brings Python's multiprocessing to Go: child processes that run
// registered Go functions, pipes and connections between them, locks,
// queues and shared memory that work across processes, pools of worker
// processes, and manager processes.
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
// unix socket encoded with CBOR; a [Conn], lock, queue or shared value
// inside the arguments arrives in the child working (its descriptor is
// passed with SCM_RIGHTS). Calls that wait (Join, Acquire, Get, Put,
// Apply, ...) take a [context.Context] first, whose end stops the wait.
//
// # Processes
//
// [Register], [RegisterProc] and [RegisterRunner] name a target, at package
// level; [NewProcess] and [NewRunnerProcess] make a [Process] that runs it
// in a child: [Process.Start], [Process.Join], [Process.Terminate]
// (SIGTERM), [Process.Kill] (SIGKILL). Join returns the target's error or
// panic as a [*RemoteError], or an [*ExitError] for a child that exited
// non-zero otherwise (os.Exit, a signal). Exit codes are Python's: -N
// after signal N.
// [CurrentProcess], [ParentProcess] and [ActiveChildren] describe the
// process tree.
// [SetSpares] keeps children started ahead of time, to which Start hands
// its target instead of starting a process.
//
// A target registered with [RegisterCtx] (or [RegisterProcCtx], or a
// [ContextRunner]) sees cancellation: its ctx is cancelled by
// [Process.Terminate], by the end of the parent for a daemon child, and in
// a pool by the end of the caller's ctx or the task's timeout; it has
// [Process.CancelGrace] to return before it is ended.
//
// # Errors across processes
//
// A target's error reaches the parent as a [*RemoteError] with its message
// and stack. Errors registered with [RegisterError] (sentinels) and
// [RegisterErrorType] (types whose exported fields travel) keep their
// identity: errors.Is and errors.As see them in the parent as they did in
// the child, however they were wrapped. mp's sentinels, context.Canceled,
// context.DeadlineExceeded, io.EOF and the fs sentinels are registered
// already. [SetLogger] gives mp a log/slog logger for what happens out of
// sight: workers replaced, handshakes refused, manager clients gone.
//
// # Package variables
//
// A child is not a copy of its parent: it is the binary started afresh,
// which runs the package initialisation (variable declarations and init
// functions) and main up to mp.Main, which then runs the target. So the
// package variables that the parent sets at run time, in main or later, are
// not seen by its children, which hold the values of initialisation; nor
// are the command-line arguments, of which a child gets only the program
// name. Pass such state explicitly: in the target's argument (or over a
// [Conn]), to pool workers through [PoolOptions.Initializer], or in the
// environment, which a child inherits as it is when [Process.Start] is
// called.
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
//
// # Connections
//
// [Pipe] returns the two ends of a one-way or duplex connection, each a
// [Conn]: [Conn.Send] and [Conn.Recv] carry Go values, [Conn.SendBytes] and
// [Conn.RecvBytes] raw messages in CPython's framing; [Conn.SetDeadline]
// bounds them as in package net. [Wait] waits for any of several Conns and
// Processes. Package [github.com/go-mp/mp/connection]
// has the Listener and Client of CPython's multiprocessing.connection,
// wire-compatible with it, for processes that find each other by address.
//
// # Synchronisation
//
// [Lock], [RLock], [Semaphore], [BoundedSemaphore], [Event], [Condition]
// and [Barrier] are Python's, shared by the processes they are passed to.
// A lock whose holder died is not lost: the next Acquire takes it over and
// returns an [*OwnerDiedError] (errors.Is [ErrOwnerDied]) with the lock
// held. A semaphore's units have no owner: a unit taken by a process that
// died is lost, so give its waiters a deadline.
//
// # Shared memory
//
// [Value] and [Array] hold a value and an array of fixed-size elements
// (numbers, bools, and arrays and structs of them; see
// [ErrUnsupportedType]) guarded by a lock, an [RLock] unless [WithLock]
// gives another; [RawValue] and [RawArray] are the same without the lock.
// [SharedMemory] is a block of bytes that unrelated processes find by name,
// and that leaves nothing behind however its processes end.
//
// # Queues
//
// [Queue], [SimpleQueue] and [JoinableQueue] keep their items, encoded, in
// shared memory: any number of processes put and get, Put needs no reader,
// and a process killed in the middle of an operation loses at most the one
// item it was putting or had taken (see [Queue]). Items are values: they
// cannot hold a Conn, lock, queue or shared value.
//
// # Pools and executors
//
// A [Pool] runs calls of a registered [Func] in worker processes:
// [Func.Apply], [Func.ApplyAsync], [Func.Map], [Func.MapAsync], [Func.Imap]
// and [Func.ImapUnordered], with [WithProgress] or [WithProgressBar] to
// follow their progress. An [Executor] is Python's ProcessPoolExecutor: [Func.Submit]
// returns a [Future]; [AsCompleted] and [WaitFutures] wait for several.
// A worker that dies fails only the task it was running, with a
// [*WorkerLostError] (errors.Is [ErrWorkerLost]), and is replaced;
// [PoolOptions] limit each task's time ([PoolOptions.TaskTimeout]) and
// recycle leaky workers ([PoolOptions.MaxTasksPerChild],
// [PoolOptions.MaxMemory]). Cancelling the ctx of a call drops its tasks
// not yet started and stops those running (see [Pool]); [WorkerID] gives a
// task its worker's stable slot. A task's argument and result are values: they
// cannot hold a Conn, lock, queue or shared value.
//
// # Managers
//
// Package [github.com/go-mp/mp/manager] has Python's managers: a server
// process holds dicts, lists, queues, locks and values of registered
// types, and processes on this machine or others use them through typed
// proxies; `mp manager serve` (command [github.com/go-mp/mp/cmd/mp]) is a
// standalone server.
//
// # Linux
//
// mp relies on Linux throughout: a child is started from /proc/self/exe;
// shared objects live in memfd memory, where locks, semaphores, events and
// queues sleep on futexes; handles travel between processes as descriptors
// over unix sockets; the names of [SharedMemory] blocks, and the listeners
// made on an empty unix address, are abstract unix sockets; and whether a
// lock's holder is still alive is read from /proc.
package mp

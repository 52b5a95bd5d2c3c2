//go:build linux

// Package manager is the Go counterpart of Python's multiprocessing
// managers: a server process holds objects — dicts, lists, queues, locks,
// instances of registered types — and other processes, on this machine or
// others, use them through proxies.
//
//	m, err := manager.Start(ctx, nil) // Python's Manager()
//	...
//	defer m.Close()
//	d, err := manager.NewDict[string, int](ctx, m)
//	p := mp.NewProcess(worker, d) // the proxy travels as an argument
//
// Start runs the server in a child process (a daemon: it ends with its
// parent, however the parent ends); Connect connects to a running one;
// Serve (or a Server) serves in the current process, and `mp manager
// serve` (command github.com/go-mp/mp/cmd/mp) is a standalone server.
// Connections go through package connection: CPython's framing and authkey
// handshake, on a unix socket by default or on TCP. Over a unix socket the
// client and server then move their messages onto two rings in shared
// memory, keeping the socket to wake a sleeping reader and to notice the
// other side's end: a proxy call costs a few microseconds instead of the
// two system calls per message of a socket. Over TCP, the handshake keeps
// the key secret but not the traffic: calls and replies travel in clear
// unless the server offers TLS (Options.TLS; for Serve, a
// connection.ListenConfig with TLS; `mp manager serve -tls-cert`) and its
// clients Connect WithTLS.
//
// # Types
//
// The SyncManager types have typed proxies: Dict, List, Namespace, Value,
// Array, Queue, JoinableQueue, Lock, RLock, Semaphore, BoundedSemaphore,
// Condition, Event and Barrier, made with NewDict, NewList and so on. The
// server stores values encoded with CBOR and never decodes them: proxies
// decode them into the caller's types, so one server serves every type,
// and programs other than the one that started it can share it. Keys and
// values are encoded deterministically; two keys are the same key when
// their encodings are equal. Other types are registered with RegisterType
// and used through a Proxy, as with Python's BaseManager.register.
//
// Every method of a proxy takes a context and is one request to the
// server, answered by one reply; a proxy may be used by any number of
// goroutines. A blocking call — Lock.Acquire, Queue.Get, Condition.Wait,
// Barrier.Wait... — waits in the server; when its ctx ends, the server is
// told and stops waiting for it, so that a cancelled call leaves nothing
// behind (see each method for what happens to a result that was ready at
// that moment). A call whose ctx has already ended looks without waiting,
// as Python's timeout=0 does: what is ready wins over the done ctx.
//
// # Proxies in other processes
//
// A proxy encodes as a token (the manager's network and address, the
// run of the manager, the object's id and kind), never as the key. It can
// be passed to a child process as (part of) its argument, sent over a Conn,
// or stored in another object of the same manager (a List of Dicts, as in
// Python): whoever decodes it gets a working proxy, which connects to the
// manager when first used. The process that decodes it connects with the
// authkey:
//
//   - that of a Manager it made with Start or Connect for the same server
//     (recognised by its run, whatever address the token names), if it has
//     one open;
//   - otherwise its own mp.CurrentProcess().Authkey — which a child of the
//     program that started the manager with the default key shares.
//
// So proxies of a manager started with the default key work in the
// starter's children as they are. A process that received proxies of a
// manager with another key (say, a TCP manager of another program) calls
// Connect with that key first.
//
// # Lifetime of objects
//
// An object lives while something refers to it: a process (a session: the
// connections of one Manager, or those a process opened for proxies it
// received) that made it, received its proxy in a reply, or used a proxy
// of it; a value stored in another object that holds its token; or a name
// (Named). A proxy's Forget drops its process's reference; the end of a
// session — Close, or the death of its process — drops all of its
// references. An object no longer referred to is freed (and, if it held
// tokens, the objects they name lose a reference in turn); a proxy of a
// freed object fails with ErrNoObject. A cycle of objects that hold each
// other's tokens lives until the server ends.
//
// # Python clients
//
// A server with Python set (Server.Python, Options.Python, `mp manager
// serve -python`) also serves CPython's own manager clients, 3.11 to 3.13,
// on the same address and objects as Go clients:
//
//	m = SyncManager(address=("127.0.0.1", 5000), authkey=key)
//	m.connect()
//	d = m.dict()     # also m.list(), m.Queue(), m.Lock(), m.Value("i", 0)...
//
// Every SyncManager typeid but Pool is served (dict, list, Value, Array,
// Namespace, Queue, JoinableQueue, Lock, RLock, Semaphore,
// BoundedSemaphore, Condition, Event, Barrier), with the methods of its
// CPython proxy. A Python client reaches an object a Go client made with
// Named("jobs") by registering get_jobs (BaseManager.register("get_jobs"))
// and calling it. Values cross as the table in py_values.go says: None,
// bool, int, float, str, bytes, list, tuple (read back as a list), dict
// and set are stored as the CBOR a Go client stores for nil, bool, ints,
// float64, string, []byte, slices, maps and structs (exported fields by
// name), so both sides read what the other wrote.
//
// Proxies stored in values cross too, as with CPython's managers (a dict
// of lists): a Python proxy stored in an object is stored as the token of
// a Go proxy, and each language reads the other's as a working proxy. As
// with CPython, a Python client makes the proxies it reads with its
// process's key: it sets multiprocessing.current_process().authkey to the
// server's key first.
//
// Nothing a Python client sends is run or imported: requests may name
// only multiprocessing.managers.Token, builtins.slice and, for stored
// proxies, RebuildProxy and the proxy types; a pickle naming anything
// else is refused, as are the typeids and methods the server does not
// know, with an exception the client raises. A Barrier has no action and a
// list's sort no key: they would need Python code in the server. A Lock held by a Python process is given
// back when it dies, as for Go clients (the next Go acquirer gets an
// *mp.OwnerDiedError naming the Python process over a unix socket, -1 over
// TCP); the references of a Python process are counted as CPython does
// (incref and decref), so those of a process killed before its finalizers
// ran live until the server ends, as with CPython's server.
//
// # Failures
//
// When the server dies, every call returns an error matching
// ErrManagerGone and io.EOF at once, including calls blocked in the
// server — except a call whose ctx has ended, which returns ctx.Err(): a
// call that ends with its ctx always says so, whatever happened to its
// connection meanwhile. When a client process dies or closes its
// Manager, the server cancels its waits and gives back what it held:
// Locks and RLocks (the next acquirer gets the lock with an
// *mp.OwnerDiedError), the units of BoundedSemaphores it acquired, its
// references. Other clients are not affected. A client that is not
// authenticated never reaches the server (package connection refuses it);
// an authenticated one that speaks out of protocol is hung up on.
package manager

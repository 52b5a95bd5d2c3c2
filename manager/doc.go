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
// name), so both sides read what the other wrote. A dict keeps its order,
// as with CPython's server (a Go map has none; a Go client reads a
// Python dict as any map): where stored values are compared (a List's
// Index, Count and Remove, a Value's CompareAndSwap, and Python's in,
// index, count, remove), the pairs of maps may be in any order.
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
// know, with an exception the client raises, and so is a shutdown (no
// Python client can stop the server). A Barrier has no action and a
// list's sort no key: they would need Python code in the server. A Lock held by a Python process is given
// back when it dies, as for Go clients (the next Go acquirer gets an
// *mp.OwnerDiedError naming the Python process over a unix socket, -1 over
// TCP); so are its RLocks, however deep, and its units of
// BoundedSemaphores, but not those of a Semaphore (anyone may release
// them, as in Python). Its waits end: a party gone from a Barrier breaks
// it, as a cancelled Wait does, so that the others get
// BrokenBarrierError rather than wait for it for ever. A request it had
// only partly sent is never served. The references of a Python process are counted as CPython does
// (incref and decref), so those of a process killed before its finalizers
// ran live until the server ends, as with CPython's server. Should a
// Python request make the server panic (a bug; none is known, and the
// requests are fuzzed), only that request's connection ends, as if its
// client had gone; the server logs the panic (Server.Logger) and serves
// the other clients on, the object the request used included: no lock
// of the server's is left held, though an object the request was
// changing may be left half changed. This holds for the serving of a
// request, not for the wait of a call that blocks (an acquire, a queue's
// get), which runs aside: a panic there, as anywhere in serving a Go
// client, ends the server.
//
// As CPython's server does, the server gives each connection of a Python
// proxy thread an OS thread of its own, which waits for the connection's
// requests outside the runtime's network poller (see py_sock.go): after
// a reply it polls the socket for the next request for up to 50 µs while
// that pays (at most GOMAXPROCS-1 pollers in the process, none on one
// CPU), then sleeps in poll(2); a request costs three system calls at
// most. The thread ends with its connection. Past 1000 such connections,
// further ones are served through the runtime's poller, as Go clients'
// are, so that clients cannot push the server to the runtime's limit on
// threads.
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
//
// # Objects in a replicated store
//
// A Manager that Connect opened on the network "nats" (or that
// (*cluster.Cluster).Manager returned) has no server: its proxies keep
// their objects in NATS JetStream, in the key-value bucket MP_MANAGER
// and the work-queue stream MP_MANAGER_QUEUES, which every program
// connected to the same NATS cluster shares, and which survive the loss
// of any one node of a cluster whose streams have 3 replicas (Connect
// makes them with 3 replicas where the servers can hold them, else 1; a
// Cluster's Manager with its Options.Replicas). Connect's address is the
// NATS URLs, comma-separated, and its key, when not nil, authenticates
// with the token derived from it, as `mp cluster serve` expects (nil:
// none, or the token in the URLs: nats://TOKEN@host:port). Programs
// find the same object by its name (Named); an object made without a
// name gets a random one, which only this proxy knows. Names are per
// kind: a Dict and a Lock may share one. Objects live until they are
// emptied by their users (there is no reference counting: Forget does
// nothing and a process's end gives nothing back, except a Lock's
// lease, which runs out).
//
// The proxies keep their methods and errors; what changes is said here
// and on each method where its meaning is not the local one:
//
//   - Dict: each entry is a key of the bucket (d.NAME.KEY). Get, Set,
//     Delete, Contains, Pop and SetDefault are each atomic. Len, Keys,
//     Values, Items and Map are snapshots taken key by key (not one
//     instant of the whole dict), and Keys are in no particular order
//     (not the order they were first set); PopItem removes some item, not
//     the one set last. Update and Clear set or delete key by key: a
//     reader may see part of them.
//
//   - Value: one key (v.NAME). Set is a plain write; Swap and
//     CompareAndSwap are compare-and-swap on the key's revision, retried
//     until no other writer came in between, so that counters updated
//     with CompareAndSwap from any number of processes end exact. Every
//     such loop (here and in Dict's Delete, Pop and SetDefault, the
//     writes of List, Array, Semaphore, Barrier and a JoinableQueue's
//     count, a Lock's Release) pauses a random while after each round
//     lost, growing from up to 1 ms to up to 64 ms, and gives up after 48
//     rounds lost in a row (about 1.3 s of being overtaken, 2.7 s at
//     most, whatever the call's ctx) with ErrContended, having made no
//     change (a Lock whose Release gave up is given back when its lease
//     runs out): a writer that never stops cannot keep a call going for
//     ever.
//
//   - Lock: one key (l.NAME) created only if absent, with a lease (Lease,
//     5 s by default) that the holder renews every third of the lease by a
//     write checked against its last revision; Release deletes it with a
//     revision check. A holder that dies (or is cut off) holds the lock
//     until its lease runs out; the next acquirer then gets the lock with
//     an *mp.OwnerDiedError, as locally (its Pid is 0 when the acquirer
//     never saw the dead holder's entry). A holder paused past its lease
//     (SIGSTOP, a long GC pause, a partition) loses the lock: another may
//     take it meanwhile, and the paused holder learns it at its next
//     operation on the lock (Release returns ErrLeaseLost). So mutual
//     exclusion holds only for holders that keep running: each
//     acquisition carries a fencing token (Lock.Token), greater than that
//     of every earlier acquisition, to be passed to what the lock
//     protects, which refuses a token lower than one it has seen. Only
//     the proxy that took the lock may release it (mp.ErrNotHeld
//     otherwise). Waiters are woken by the key's writes, and look again
//     every 200 ms; they are not served in order (a holder that releases
//     and acquires again at once may take the lock before them).
//
//   - Queue: items are messages of a work-queue stream
//     (subject mpq.NAME). A Get takes an item and acknowledges it before
//     it returns: an item whose getter dies before the acknowledgement
//     is given to another getter after the ack wait (5 s), so
//     no item is lost to a getter's death; an item is given to one getter
//     at a time. A getter paused (or cut off) for more than the ack wait
//     between taking an item and acknowledging it may see the item given
//     to another getter meanwhile, and both Gets may then return it (an
//     item delivered twice; this is not tested). Qsize (and Empty) count
//     the stream's messages of the queue: every item whose Put has
//     returned, including those taken by a Get that has not acknowledged
//     them, and no item whose Get has returned. (A stream with replicas
//     removes an acknowledged message a round of replication after it
//     answers the acknowledgement: a Get there waits for the removal, up
//     to 2 s, past which it returns the item all the same and a Qsize may
//     still count it for a while.) maxsize is not supported (NewQueue
//     with maxsize > 0 returns an error).
//
//   - RLock: as Lock, one key (r.NAME) with a lease; the holder's count of
//     acquisitions is kept by the proxy that holds it, so another proxy
//     of the same name (in this process or another) waits like any other
//     acquirer.
//
//   - Namespace: each field is a key (n.NAME.FIELD); Fields is a snapshot.
//
//   - Event: one key holding the flag; Wait watches it.
//
//   - Semaphore and BoundedSemaphore: one key holding the value (and the
//     bound), taken and given back by compare-and-swap; Acquire watches
//     it. Units are not given back when their holder dies, bounded or not
//     (a BoundedSemaphore's bound only refuses a Release too many).
//
//   - JoinableQueue: a Queue of its own (subject mpq.j=NAME, apart from
//     a Queue of the same name) and a count of unfinished items (key
//     j.NAME), which Put raises before it puts the item (an item whose Put
//     failed may count as unfinished: Join then waits for a TaskDone that
//     does not come) and TaskDone lowers; Join watches it.
//
//   - List and Array: one key holding the whole sequence, read and
//     written back by compare-and-swap for each operation (each atomic; a
//     long list makes every write long).
//
//   - Barrier: one key holding the generation under way and the parties
//     waiting in it, changed by compare-and-swap; Wait watches it. A Wait
//     whose ctx ends (or the barrier's timeout) breaks the generation, as
//     locally, but a party whose process dies while it waits stays
//     counted: the barrier may then pass with it, where a manager server
//     would break it.
//
// Condition and registered types are not offered on "nats": their New
// functions return an error matching ErrUnknownType. (A Condition's
// notification would have to reach waiters that may have died without a
// trace, and be lost with them; its lock's lease may run out during a
// Wait.) Proxies of "nats"
// objects do not travel (MarshalCBOR returns an error): each program asks
// for the object by its name.
//
// Other programs with access to the store (its credentials) can write
// in it what they like, as any client of NATS can: a proxy checks what it
// reads as input, and an object whose state no proxy could have written
// (a negative semaphore, a barrier of no parties, a list whose length
// disagrees with its items, a key that does not parse) gives ErrCorrupt
// to every call that reads what is wrong, waiters included (a Dict's or
// Namespace's key that no proxy writes: the calls that list the keys;
// a List's key: every call), until it is written anew (an Event's Set, a
// Dict's Clear); other calls and other objects are not affected. A key deleted or purged under a waiter (a
// Barrier's Wait, a Semaphore's Acquire, an Event's Wait, a
// JoinableQueue's Join) ends the wait with ErrNoObject. What such a
// program can do to the meaning of objects is not checked, and is this:
// it can change any value; it can delete a held Lock's key, after which
// another acquirer takes the lock while the first holder still believes
// it holds it (the first learns it at its Release, ErrLeaseLost, and the
// new holder's token is greater: the same as a lease that ran out); it
// can hold a Lock for as long as it likes by writing its key (without a
// lease, it is never given back), or mark a free Lock's key as expired so
// that the next acquirer gets an *mp.OwnerDiedError naming any pid; it
// can take, put or remove any Queue's items, and wake waiters for
// nothing (each wake-up costs the waiter one look at the key). A Queue item that does not decode is taken and its Get returns
// the decoding error. So give the store's credentials only to programs
// trusted with every object in it.
//
// A write to the store that gets no answer (a failover of its leader, a
// reconnection) is sent again, with an id that lets JetStream store it
// once, until the call's ctx ends; reads are tried again the same way. So
// calls ride out a failover (they wait for it), and a call that returns
// an error other than ctx's made no change.
package manager

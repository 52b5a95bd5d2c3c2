//go:build linux

package manager

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/pickle"
	ogórek "github.com/kisielk/og-rek"
	"golang.org/x/sys/unix"
)

// TestPythonConnectionsLeaveThePoller: the socket of a Python proxy
// thread's connection leaves the runtime's epoll set once the thread
// serving it has taken it (see py_sock.go), so that nothing in the poller
// wakes for its requests or for the room its client's reads make; its
// requests are still answered, and the threads that served the
// connections end with them.
func TestPythonConnectionsLeaveThePoller(t *testing.T) {
	m, ident := servePyDict(t)
	p0 := dialPy(t, m)
	p0.call(nil, "accept_connection", "setter")
	if kind, v := p0.call(ident, "__setitem__", "k", 7); kind != "#RETURN" || v != nil {
		t.Fatalf("__setitem__: %s %#v", kind, v)
	}
	p0.c.Close()

	before := polledFDs(t)
	var mu sync.Mutex
	var tids []int
	record := func(tid int) {
		mu.Lock()
		tids = append(tids, tid)
		mu.Unlock()
	}
	testHookPyThread.Store(&record)
	t.Cleanup(func() { testHookPyThread.Store(nil) })
	const n = 8
	var ps []*pyConn
	for range n {
		p := dialPy(t, m)
		p.call(nil, "accept_connection", "t")
		for range 3 {
			if kind, v := p.call(ident, "__getitem__", "k"); kind != "#RETURN" || v != int64(7) {
				t.Fatalf("__getitem__: %s %#v", kind, v)
			}
		}
		ps = append(ps, p)
	}
	// The played clients are in this process: their n sockets are in the
	// poller. The server's n must leave it (each once its thread has
	// taken it, which may follow the reply the client has just read).
	waitFor(t, func() bool { return serverPolled(t, before, ps) == 0 },
		func() string {
			return strconv.Itoa(serverPolled(t, before, ps)) + " server sockets in the runtime's epoll set for " + strconv.Itoa(n) + " Python proxy connections"
		})
	if kind, v := ps[0].call(ident, "__getitem__", "k"); kind != "#RETURN" || v != int64(7) {
		t.Fatalf("__getitem__ after: %s %#v", kind, v)
	}
	mu.Lock()
	ours := slices.Clone(tids)
	mu.Unlock()
	if len(ours) != n {
		t.Fatalf("%d threads took a connection's socket, want %d", len(ours), n)
	}
	for _, p := range ps {
		p.c.Close()
	}
	// Each connection's thread ends with it (the runtime keeps no thread
	// that a goroutine locked and left locked).
	alive := func() (left []int) {
		for _, tid := range ours {
			if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err == nil {
				left = append(left, tid)
			}
		}
		return left
	}
	waitFor(t, func() bool { return len(alive()) == 0 },
		func() string {
			return fmt.Sprintf("threads %v of the %d connections still there after the connections ended", alive(), n)
		})
}

// TestPythonThreadsCapped: past pyMaxThreads connections on threads of
// their own, a Python proxy thread's connection is served through the
// runtime's poller, so that clients cannot make the server start
// threads without limit (the runtime dies past 10 000); every connection
// is answered either way.
func TestPythonThreadsCapped(t *testing.T) {
	old := pyMaxThreads
	t.Cleanup(func() { pyMaxThreads = old }) // after the server's end (cleanups run last first)
	pyMaxThreads = 2
	m, ident := servePyDict(t)

	before := polledFDs(t)
	const n = 5
	var ps []*pyConn
	for i := range n {
		p := dialPy(t, m)
		p.call(nil, "accept_connection", "t")
		if kind, v := p.call(ident, "__setitem__", strconv.Itoa(i), i); kind != "#RETURN" || v != nil {
			t.Fatalf("__setitem__: %s %#v", kind, v)
		}
		ps = append(ps, p)
	}
	// The server's sockets of the connections past the first two.
	waitFor(t, func() bool { return serverPolled(t, before, ps) == n-2 },
		func() string {
			return strconv.Itoa(serverPolled(t, before, ps)) + " server sockets in the runtime's epoll set for " + strconv.Itoa(n) + " Python proxy connections, 2 on threads of their own"
		})
	for i, p := range ps {
		if kind, v := p.call(ident, "__getitem__", strconv.Itoa(i)); kind != "#RETURN" || v != int64(i) {
			t.Fatalf("__getitem__ on connection %d: %s %#v", i, kind, v)
		}
	}
}

// servePyDict serves a Python server here with a dict named "d", and
// returns the dict's id for a played Python client.
func servePyDict(t *testing.T) (*Manager, string) {
	m := serveHere(t, &Server{Python: true}, "unix")
	if _, err := NewDict[string, int](hostileCtx(t), m, Named("d")); err != nil {
		t.Fatal(err)
	}
	_, v := dialPy(t, m).call(nil, "create", "get_d")
	return m, v.(ogórek.Tuple)[0].(string)
}

// waitFor waits up to 10 s for cond, failing with what() otherwise.
func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// polledFDs returns the inodes of the files registered in this
// process's epoll sets (the runtime's network poller): inodes, not
// descriptors, whose numbers are reused as soon as they are free.
func polledFDs(t *testing.T) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	inos := map[string]bool{}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || l != "anon_inode:[eventpoll]" {
			continue
		}
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "tfd:") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if ino, ok := strings.CutPrefix(f, "ino:"); ok {
					inos[ino] = true
				}
			}
		}
	}
	return inos
}

// serverPolled counts the files in the runtime's epoll sets that were not
// in before, other than the sockets of the played clients ps: the
// server's sockets of their connections (both ends are in this process).
func serverPolled(t *testing.T, before map[string]bool, ps []*pyConn) int {
	t.Helper()
	now := polledFDs(t)
	for _, p := range ps {
		var st unix.Stat_t
		if err := unix.Fstat(fdOf(t, p.c), &st); err != nil {
			t.Fatal(err)
		}
		delete(now, strconv.FormatUint(st.Ino, 16))
	}
	n := 0
	for ino := range now {
		if !before[ino] {
			n++
		}
	}
	return n
}

// TestPythonQuickClientPolled: after a reply, the thread of a Python
// connection polls its socket for the next request (while polling pays,
// see pySock.read) instead of sleeping in poll(2) at once. The request
// is made to come exactly while the thread polls: the hook that sees a
// poll find nothing sends it, from the client's side; the thread must
// then read it without sleeping. Were the thread to sleep at once, no
// poll would be seen; were it to sleep anyway, the sleep would show
// between the hook and the catch.
func TestPythonQuickClientPolled(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatalf("GOMAXPROCS %d: a process on one CPU never polls, the test needs two", runtime.GOMAXPROCS(0))
	}
	var (
		mu     sync.Mutex
		events []string
		armed  atomic.Bool
		next   []byte
		client *pyConn
	)
	note := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	testHookPyPolling = func() {
		if armed.CompareAndSwap(true, false) {
			note("polling")
			if err := client.c.SendBytes(next); err != nil {
				note("send: " + err.Error())
			}
		}
	}
	testHookPyCaught = func() { note("caught") }
	testHookPySleep = func() { note("sleep") }
	t.Cleanup(func() { testHookPyPolling, testHookPyCaught, testHookPySleep = nil, nil, nil })

	m, ident := servePyDict(t)
	client = dialPy(t, m)
	client.call(nil, "accept_connection", "quick")
	var err error
	next, err = pickle.Encode(ogórek.Tuple{ident, "__getitem__", ogórek.Tuple{"k"}, ogórek.NewDict()}, pickle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client.call(ident, "__setitem__", "k", 7)
	// A poll that finds nothing happens after a reply, when polling pays;
	// the spinner tries again now and then when it has stopped paying
	// (a slow test goroutine on a busy machine), so some calls suffice.
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatalf("2000 requests after replies and no poll found the socket empty: events %v", events)
		}
		mu.Lock()
		events = events[:0]
		mu.Unlock()
		armed.Store(true)
		if kind, v := client.call(ident, "__getitem__", "k"); kind != "#RETURN" || v != int64(7) {
			t.Fatalf("__getitem__: %s %#v", kind, v)
		}
		mu.Lock()
		polled := slices.Contains(events, "polling")
		mu.Unlock()
		if !polled {
			continue
		}
		armed.Store(false)
		// The request sent by the hook: its reply.
		if kind, v := client.recv(); kind != "#RETURN" || v != int64(7) {
			t.Fatalf("__getitem__ sent while polling: %s %#v", kind, v)
		}
		mu.Lock()
		defer mu.Unlock()
		after := events[slices.Index(events, "polling")+1:]
		if len(after) == 0 || after[0] != "caught" {
			t.Fatalf("the request sent while the thread polled was not read by the poll: events after it %v", after)
		}
		return
	}
}

// TestPythonWaitSleepsWhenSleepingAnswersSooner: a Python connection's
// thread that has found its waits shorter asleep than polling sleeps at
// once, polling only on the rare waits that try the other way (a try of
// pyWaitTryLen waits, pyWaitTryMin waits apart at first); a wait asleep looks at the socket once, after poll(2). The
// waits are timed by a clock of the test: each request is sent by a hook
// of the thread, as a poll finds the socket empty (the wait then counts
// 80 µs, and two looks) or as the thread goes to sleep (20 µs).
func TestPythonWaitSleepsWhenSleepingAnswersSooner(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatalf("GOMAXPROCS %d: a process on one CPU never polls, the test needs two", runtime.GOMAXPROCS(0))
	}
	const n = 2 * pyWaitTryMin
	var (
		clock    atomic.Int64 // ns after base
		pending  atomic.Int32 // requests left to send
		polls    atomic.Int32 // waits that polled
		sleeps   atomic.Int32
		looks    atomic.Int32
		counting atomic.Bool
		req      []byte
		client   *pyConn
		failed   atomic.Value
	)
	base := time.Now()
	send := func(d time.Duration) bool {
		if pending.Add(-1) < 0 {
			pending.Add(1)
			return false
		}
		clock.Add(int64(d))
		if err := client.c.SendBytes(req); err != nil {
			failed.Store(err.Error())
		}
		return true
	}
	pyWaitClock = func() time.Time { return base.Add(time.Duration(clock.Load())) }
	testHookPyPolling = func() {
		if send(80 * time.Microsecond) {
			polls.Add(1)
		}
	}
	testHookPySleep = func() {
		if send(20 * time.Microsecond) {
			sleeps.Add(1)
		}
	}
	testHookPyLook = func() {
		if counting.Load() {
			looks.Add(1)
		}
	}
	t.Cleanup(func() { testHookPyPolling, testHookPySleep, testHookPyLook, pyWaitClock = nil, nil, nil, time.Now })

	m, ident := servePyDict(t)
	var err error
	if req, err = pickle.Encode(ogórek.Tuple{ident, "__len__", ogórek.Tuple{}, ogórek.NewDict()}, pickle.Options{}); err != nil {
		t.Fatal(err)
	}
	client = dialPy(t, m)
	pending.Store(n) // before the thread takes the socket: its first wait sends the first
	client.call(nil, "accept_connection", "waits")
	counting.Store(true) // the thread may be in its first wait, which sends the first request
	for i := range n {
		if kind, v := client.recv(); kind != "#RETURN" || v != int64(0) {
			t.Fatalf("__len__ %d: %s %#v", i, kind, v)
		}
	}
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	// The first wait polls, the second sleeps; of the rest, a try polls
	// (pyWaitTryLen waits, 64 waits later; the next is 128 waits after).
	if p, s := polls.Load(), sleeps.Load(); p > 1+pyWaitTryLen || p+s != n {
		t.Fatalf("%d of %d waits polled (%d slept), although sleeping answered them 4 times sooner", p, n, s)
	}
	// A polled wait looks twice (the look that finds nothing, the one
	// that catches the request), a wait asleep once (after poll(2)), and
	// now and then a request arrives in two pieces, read by two waits;
	// were each wait asleep to look before poll(2) too, it would look
	// twice.
	if p, s, l := polls.Load(), sleeps.Load(), looks.Load(); l > 2*p+s+s/2 {
		t.Fatalf("%d looks at the socket for %d waits that polled and %d that slept: a wait asleep looks before poll(2)", l, p, s)
	}
}

// TestPyWaitChoosesTheShorter: pyWait has the waits go the way whose
// waits have lately been shorter, tries the other way rarely while it
// stays the worse (tries of pyWaitTryLen waits, at gaps that grow from
// pyWaitTryMin to pyWaitTryMax waits), goes over within a few tries when
// the machine changes, does not count a try of polling that the Poller
// refused as a try, and counts a long wait (a busy client) as pyWaitCap.
func TestPyWaitChoosesTheShorter(t *testing.T) {
	var w pyWait
	// waits runs k waits of the given lengths, returning how many polled
	// and how many waits it took until run waits in a row slept.
	waits := func(k int, poll, sleep time.Duration, run int) (polled, until int) {
		until, row := -1, 0
		for i := range k {
			if w.poll() {
				polled++
				row = 0
				w.record(true, poll)
				continue
			}
			w.record(false, sleep)
			if row++; row == run && until < 0 {
				until = i + 1 - run
			}
		}
		return polled, until
	}
	const us = time.Microsecond
	if got, _ := waits(2, 30*us, 80*us, 1); got != 1 {
		t.Fatalf("the first two waits: %d polled, not 1 (one of each way)", got)
	}
	// Polling 30 µs, sleeping 80: tries of sleeping after 64, 128, 256,
	// 512 and then every 1024 waits.
	const k = 8 * pyWaitTryMax
	if got, _ := waits(k, 30*us, 80*us, 1); k-got > pyWaitTryLen*(4+k/pyWaitTryMax) {
		t.Fatalf("polling 30 µs, sleeping 80: %d of %d waits slept", k-got, k)
	}
	// The machine changes: sleeping now takes 20 µs. Within a few tries
	// sleeping wins, and then polling is tried rarely.
	if _, until := waits(k, 30*us, 20*us, pyWaitTryMin/2); until < 0 || until > 4*pyWaitTryMax {
		t.Fatalf("polling 30 µs, sleeping 20: the waits went on polling (%d waits before they slept)", until)
	}
	if got, _ := waits(k, 30*us, 20*us, 1); got > pyWaitTryLen*(4+k/pyWaitTryMax) {
		t.Fatalf("polling 30 µs, sleeping 20: %d of %d waits polled", got, k)
	}
	// A try of polling that the Poller refuses (the waits sleep) is a
	// wait like the others: it does not bring the tries closer again.
	if w.gap != pyWaitTryMax {
		t.Fatalf("gap %d between tries while sleeping stayed the best, not %d", w.gap, pyWaitTryMax)
	}
	for tries := 0; tries < 3*pyWaitTryLen; {
		if w.poll() {
			tries++
		}
		w.record(false, 20*us) // polling refused, or sleeping chosen
	}
	if w.gap != pyWaitTryMax {
		t.Fatalf("gap %d between tries after 3 tries of polling were refused, not %d", w.gap, pyWaitTryMax)
	}
	// A wait of a second is a client busy elsewhere: it counts as
	// pyWaitCap, so that one such wait does not decide for long.
	w.record(false, time.Second)
	if w.avg[1] > pyWaitCap {
		t.Fatalf("a wait of 1 s made the average of sleeping %v, over the cap %v", w.avg[1], pyWaitCap)
	}
}

// TestPyWaitTriesCountTheirSecondHalf: a try counts only its last
// pyWaitTryLen/2 waits, once the thread has moved to where that way of
// waiting puts it: from polling at 30 µs a wait, tries of sleeping whose
// first waits take 60 µs (the thread woken on the CPU it polled on) and
// the next 20 (on its client's) make the waits sleep.
func TestPyWaitTriesCountTheirSecondHalf(t *testing.T) {
	var w pyWait
	const us = time.Microsecond
	row := 0 // waits asleep in a row
	for range 8 * pyWaitTryMax {
		if w.poll() {
			row = 0
			w.record(true, 30*us)
			continue
		}
		if row++; row <= pyWaitTryLen/2 {
			w.record(false, 60*us)
		} else {
			w.record(false, 20*us)
		}
		if row == pyWaitTryMin/2 {
			return
		}
	}
	t.Fatalf("polling 30 µs a wait, sleeping 60 for the first %d waits and 20 after: the waits went on polling (avg %v)", pyWaitTryLen/2, w.avg)
}

// TestPyWaitTimesWholeRequests: a wait is counted from its start to the
// start of the next, so that the reply of the request it waited for
// (whose sending wakes the client sooner or later depending on where the
// threads run) counts for the way it waited.
func TestPyWaitTimesWholeRequests(t *testing.T) {
	var w pyWait
	t0 := time.Unix(1000, 0)
	const us = time.Microsecond
	if !w.start(t0) { // the first wait polls: nothing to count yet
		t.Fatal("the first wait did not poll")
	}
	w.began(true)
	// Its request came after 10 µs, its reply took 25 more.
	if w.start(t0.Add(35 * us)) {
		t.Fatal("the second wait polled: sleeping is not known yet")
	}
	w.began(false)
	w.start(t0.Add(55 * us))
	if w.avg[0] != 35*us || w.avg[1] != 20*us {
		t.Fatalf("waits counted %v polling, %v sleeping; want 35µs and 20µs", w.avg[0], w.avg[1])
	}
}

// TestPySockLengthNearMaxInt64: a message announced as nearly 2^63 bytes
// long, on a socket with no limit, is read as the bytes arrive (until the
// client hangs up), not ended early by an overflow of header plus length
// that took it for a message fitting in the buffer, whose read of no
// room at all then saw the end of the stream.
func TestPySockLengthNearMaxInt64(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	ps := &pySock{fd: fds[0], buf: make([]byte, 4<<10)} // limit 0: any
	defer ps.close()
	// The 8-byte form of the header: -1, then the length.
	msg := []byte{0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfa}
	msg = append(msg, make([]byte, 5000)...)
	if _, err := unix.Write(fds[1], msg); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ps.recv()
		done <- err
	}()
	for {
		select {
		case err := <-done:
			t.Fatalf("recv ended with %v while the client was still sending", err)
		default:
		}
		if n, err := unix.IoctlGetInt(fds[0], unix.SIOCINQ); err != nil {
			t.Fatal(err)
		} else if n == 0 {
			break // all read: recv waits for more
		}
		time.Sleep(time.Millisecond)
	}
	unix.Shutdown(fds[1], unix.SHUT_WR)
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("recv: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestPythonRequestsFoundAtOnceKeepPolling: a wait whose first look
// finds the request did not need polling, but it shows the client
// answers fast, as a poll that a request ends does: it must not count as
// a poll in vain. After quick such waits, polling must survive as many
// polls in vain in a row as it does after polls that paid (four of the
// five that stop it, see ringconn's worthScore). Each request is sent by
// a hook of the connection's thread: in the first phase by its first
// look at the socket, in the second only as the thread goes to sleep
// (its poll ran out in vain); the last request is sent by whichever
// comes first, which tells whether that wait polled (the look that
// follows poll(2) does not count). The waits are timed
// by a clock of the test that makes polling the shorter way (see
// pyWait), so that only the Poller decides.
func TestPythonRequestsFoundAtOnceKeepPolling(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatalf("GOMAXPROCS %d: a process on one CPU never polls, the test needs two", runtime.GOMAXPROCS(0))
	}
	const quick, vain = 40, 4
	var (
		clock    atomic.Int64 // ns after base
		sent     atomic.Int32 // requests sent
		armed    atomic.Bool  // the thread has the socket: its waits send
		lastPoll atomic.Int32 // the last wait: 1 polled, 2 slept
		asleep   atomic.Bool  // the thread went to sleep: its next look is after poll(2)
		req      []byte
		client   *pyConn
		failed   atomic.Value
	)
	base := time.Now()
	send := func(d time.Duration) {
		clock.Add(int64(d))
		if err := client.c.SendBytes(req); err != nil {
			failed.Store(err.Error())
		}
		sent.Add(1)
	}
	pyWaitClock = func() time.Time { return base.Add(time.Duration(clock.Load())) }
	testHookPyLook = func() {
		if asleep.Swap(false) {
			return // the look after poll(2)
		}
		switch i := sent.Load(); {
		case !armed.Load() || i > quick+vain:
		case i < quick:
			send(time.Microsecond) // found by this look
		case i == quick+vain && lastPoll.CompareAndSwap(0, 1):
			send(time.Microsecond)
		}
	}
	testHookPySleep = func() {
		asleep.Store(true)
		switch i := sent.Load(); {
		case !armed.Load() || i > quick+vain:
		case i == quick+vain:
			if lastPoll.CompareAndSwap(0, 2) {
				send(100 * time.Microsecond)
			}
		default: // a poll in vain (or, early on, pyWait's first wait asleep)
			send(100 * time.Microsecond)
		}
	}
	t.Cleanup(func() { testHookPyLook, testHookPySleep, pyWaitClock = nil, nil, time.Now })

	m, ident := servePyDict(t)
	var err error
	if req, err = pickle.Encode(ogórek.Tuple{ident, "__len__", ogórek.Tuple{}, ogórek.NewDict()}, pickle.Options{}); err != nil {
		t.Fatal(err)
	}
	client = dialPy(t, m)
	armed.Store(true) // before the thread takes the socket: its first wait sends the first
	client.call(nil, "accept_connection", "waits")
	for i := range quick + vain + 1 {
		if kind, v := client.recv(); kind != "#RETURN" || v != int64(0) {
			t.Fatalf("__len__ %d: %s %#v", i, kind, v)
		}
	}
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	if lastPoll.Load() != 1 {
		t.Fatalf("after %d requests found at once and %d polls in vain, the next wait slept without polling: the waits that found their request at once counted as polls in vain", quick, vain)
	}
}

// TestPyReplyUnserializable: a reply whose value cannot be pickled (a
// bug of the server's) is sent as ("#UNSERIALIZABLE", why), after what b
// held, on both ways a reply is made.
func TestPyReplyUnserializable(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("head")} {
		out := appendPyReply(b, pyReturn(make(chan int)))
		if string(out[:len(b)]) != string(b) {
			t.Fatalf("appendPyReply(%q, ...) lost what b held: %q", b, out)
		}
		v, err := pickle.Decode(out[len(b):], pickle.Options{})
		tup, _ := v.(ogórek.Tuple)
		if err != nil || len(tup) != 2 || tup[0] != "#UNSERIALIZABLE" {
			t.Fatalf("reply of a channel: %#v, %v; want (\"#UNSERIALIZABLE\", why)", v, err)
		}
		if why, _ := tup[1].(string); why == "" {
			t.Fatalf("reply of a channel: %#v: no reason", v)
		}
	}
}

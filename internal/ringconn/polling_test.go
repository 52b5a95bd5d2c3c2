//go:build linux

package ringconn

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/connerr"
	"github.com/go-mp/mp/internal/futex"
	"golang.org/x/sys/unix"
)

// setProcs sets GOMAXPROCS to n for the rest of the test, and has procs
// see it at once.
func setProcs(t *testing.T, n int) {
	prev := runtime.GOMAXPROCS(n)
	procsSeen.Store(0) // see procs
	t.Cleanup(func() {
		runtime.GOMAXPROCS(prev)
		procsSeen.Store(0)
	})
}

// lateWaits has b receive n messages from a, each sent only once b
// sleeps on its socket, and returns which of the receives polled the ring
// before they slept (polling that no message can end). What a receive
// decided is seen as it decides (testHookPoll), not in the time it took,
// which a busy machine stretches.
func lateWaits(t *testing.T, a, b *Conn, n int) (polled []int) {
	t.Helper()
	var polls atomic.Int32
	testHookPoll = func(c *Conn) {
		if c == b {
			polls.Add(1)
		}
	}
	defer func() { testHookPoll = nil }()
	for i := range n {
		done := make(chan error, 1)
		go func() {
			_, err := b.RecvBytesInto(make([]byte, 8), 0)
			done <- err
		}()
		for b.in.sleeping.Load() == 0 {
			select {
			case err := <-done:
				t.Fatalf("receive %d returned before a message: %v", i, err)
			default:
			}
			runtime.Gosched()
		}
		if err := a.SendBytes([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if polls.Swap(0) != 0 {
			polled = append(polled, i)
		}
	}
	return polled
}

// A receiver whose messages come late (each long after it started
// waiting) soon stops polling for them: it sleeps at once, instead of
// burning DefaultSpin of CPU on each wait in vain (on a small machine,
// the CPU the sender needs). Five polls in vain stop polling; the tries
// after 1, 2, 4 and 8 waits that follow make nine of the 40 waits.
func TestSlowPeerNotPolled(t *testing.T) {
	setProcs(t, max(2, runtime.GOMAXPROCS(0))) // one P never polls
	a, b := pair(t)
	polled := lateWaits(t, a, b, 40)
	t.Logf("the waits that polled: %v", polled)
	if len(polled) > 9 {
		t.Fatalf("%d of 40 waits for a late peer polled (%v), want 9 at most", len(polled), polled)
	}
	if b.spinner.worth() {
		t.Fatalf("polling still worth it after 40 waits in vain (%+v)", b.spinner)
	}
}

// A process on one core does not poll: its peer cannot run meanwhile.
func TestNoPollingOnOneCore(t *testing.T) {
	setProcs(t, 1)
	a, b := pair(t)
	if polled := lateWaits(t, a, b, 5); len(polled) != 0 {
		t.Fatalf("the receives %v polled on one core", polled)
	}
}

// The spinner's rules: five polls in vain in a row stop polling; then
// tries come after 2, 4, ... waits, up to 64 (maxGap: two sides that
// sleep find polling again soon after it pays again); a try that a
// message ends brings back polling on every wait.
func TestSpinnerAdapts(t *testing.T) {
	s := newSpinner()
	for i := range 5 {
		if !s.worth() || !s.poll() {
			t.Fatalf("poll %d refused while polling paid", i)
		}
		s.learn(false)
	}
	if s.worth() {
		t.Fatalf("still polling after five polls in vain: %+v", s)
	}
	// Count the waits between tries while every try is in vain.
	var gaps []int
	skipped := 0
	for len(gaps) < 10 {
		if !s.poll() {
			skipped++
			continue
		}
		s.learn(false)
		gaps = append(gaps, skipped)
		skipped = 0
	}
	want := []int{1, 2, 4, 8, 16, 32, 64, 64, 64, 64}
	for i := range want {
		if gaps[i] != want[i] {
			t.Fatalf("waits between tries %v, want %v", gaps, want)
		}
	}
	// A try that a message ends: polling on every wait again.
	for !s.poll() {
	}
	s.learn(true)
	for i := range 10 {
		if !s.poll() {
			t.Fatalf("wait %d after a try that paid does not poll", i)
		}
		s.learn(true)
	}
	// Polls that pay one time in two keep polling.
	for i := range 100 {
		if !s.poll() {
			t.Fatalf("wait %d does not poll with 1 poll in 2 paying", i)
		}
		s.learn(i%2 != 0)
	}
}

// Waits that their message ends within the first looks keep polling
// worth it through bursts of slow waits: four polls in vain in a row
// after every ten quick waits never stop polling (only the polls
// counting, the fourth burst would).
func TestQuickWaitsKeepPolling(t *testing.T) {
	s := newSpinner()
	for round := range 20 {
		for range 10 {
			s.quick()
		}
		for i := range 4 {
			if !s.poll() {
				t.Fatalf("round %d, slow wait %d: no polling (%+v)", round, i, s)
			}
			s.learn(false)
		}
	}
}

// A wait that its message ends at once teaches the Conn that its peer
// answers fast: polling that had stopped is worth it again.
func TestQuickReceiveBringsBackPolling(t *testing.T) {
	a, b := pair(t)
	b.spinner = spinner{gap: maxGap, skip: 1 << 30} // polling stopped
	testHookWait = func(c *Conn) {
		if c == b {
			if err := a.SendBytes([]byte{1}); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { testHookWait = nil }()
	if _, err := b.RecvBytesInto(make([]byte, 8), 0); err != nil {
		t.Fatal(err)
	}
	if !b.spinner.worth() {
		t.Fatalf("polling not worth it after a message that came at once (%+v)", b.spinner)
	}
}

// futexPair is pair with b sleeping on a futex, for hold at most (see
// futexHold), and b asleep on it once sleepingB returns. The process has
// two Ps at least: with one, receives sleep on the socket.
func futexPair(t *testing.T, hold time.Duration) (a, b *Conn, sleepingB func()) {
	t.Helper()
	setProcs(t, max(2, runtime.GOMAXPROCS(0)))
	a, b = pair(t)
	b.SetFutexSleep(true)
	b.futexHold = hold
	b.spinner = spinner{gap: maxGap, skip: 1 << 30} // sleeps at once
	return a, b, func() { waitUntil(t, func() bool { return b.in.sleeping.Load() == sleepFutex }) }
}

// onSleep has f called as b goes to sleep, for the rest of the test (see
// testHookSleep).
func onSleep(t *testing.T, b *Conn, f func(how uint32)) {
	testHookSleep = func(c *Conn, how uint32) {
		if c == b {
			f(how)
		}
	}
	t.Cleanup(func() { testHookSleep = nil })
}

// recvWithin waits for a receive's error from errc, for d at most: a
// bound that proves only that the receive returns.
func recvWithin(t *testing.T, errc <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("the receive did not return in %v", d)
		return nil
	}
}

// recvAsync receives one message on c in a goroutine.
func recvAsync(c *Conn) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := c.RecvBytesInto(make([]byte, 8), 0)
		errc <- err
	}()
	return errc
}

// A receive that sleeps on a futex is woken by the next message, and not
// by a doorbell on the socket. Its hold is an hour: after futexHold, which
// a busy machine may let pass before the message comes, it would sleep on
// the socket, and the doorbell would be right. (That the wake is a
// FUTEX_WAKE, which the runtime's preemption hides here, is TestFutexWakes'.)
func TestFutexSleeperWakes(t *testing.T) {
	a, b, sleepingB := futexPair(t, time.Hour)
	onSleep(t, b, func(how uint32) {
		if how != sleepFutex {
			t.Errorf("a receive slept on the socket (%d)", how)
		}
	})
	for i := range 5 {
		errc := recvAsync(b)
		sleepingB()
		if err := a.SendBytes([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := recvWithin(t, errc, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if ok, _ := b.sock.Poll(0); ok {
			t.Fatal("a doorbell on the socket for a futex sleeper")
		}
	}
}

// The receiver's own Close, and the peer's, end a receive asleep on a
// futex (which holds it for an hour: it does not leave on its own for the
// socket, which its Close would wake too).
func TestFutexSleeperClose(t *testing.T) {
	a, b, sleepingB := futexPair(t, time.Hour)
	errc := recvAsync(b)
	sleepingB()
	b.Close()
	if err := recvWithin(t, errc, 10*time.Second); !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("own Close: %v, want mp.ErrClosed", err)
	}

	a, b, sleepingB = futexPair(t, time.Hour)
	errc = recvAsync(b)
	sleepingB()
	a.Close()
	if err := recvWithin(t, errc, 10*time.Second); err != io.EOF {
		t.Fatalf("the peer's Close: %v, want io.EOF", err)
	}
}

// A writer that goes without a word (its socket ends, its memory says
// nothing: killed) cannot wake a futex; the sleeper moves to the socket
// after futexHold, sees its end and returns io.EOF once it has read what
// was sent. The writer's socket ends as the receive goes to sleep on the
// futex, however long the test takes to get there.
func TestFutexSleeperPeerGone(t *testing.T) {
	a, b, _ := futexPair(t, futexHold)
	var once sync.Once
	onSleep(t, b, func(how uint32) {
		once.Do(func() {
			if how != sleepFutex {
				t.Errorf("the receive slept on the socket (%d) before the futex", how)
			}
			a.sock.Close() // not a.Close: no closed flag, no wake
		})
	})
	start := time.Now()
	if err := recvWithin(t, recvAsync(b), 3*time.Second); err != io.EOF {
		t.Fatalf("after the writer's socket ended: %v, want io.EOF", err)
	}
	t.Logf("noticed after %v", time.Since(start))
}

// A long wait does not keep its P: after futexHold on the futex, the
// receive sleeps on the socket, and the next message's doorbell wakes it.
func TestFutexSleeperMovesToSocket(t *testing.T) {
	a, b, _ := futexPair(t, futexHold)
	var sleeps []uint32 // how each sleep of the receive went, under mu
	var mu sync.Mutex
	onSleep(t, b, func(how uint32) {
		mu.Lock()
		sleeps = append(sleeps, how)
		mu.Unlock()
	})
	errc := recvAsync(b)
	waitUntil(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sleeps) > 0 && sleeps[len(sleeps)-1] == sleepSocket
	})
	mu.Lock()
	if sleeps[0] != sleepFutex {
		t.Errorf("the receive slept %v, want on the futex (%d), then on the socket (%d)", sleeps, sleepFutex, sleepSocket)
	}
	mu.Unlock()
	if err := a.SendBytes([]byte("late")); err != nil {
		t.Fatal(err)
	}
	if err := recvWithin(t, errc, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A wait decides whether to poll or sleep after about a microsecond of
// looks (lookFor), however long its pauses take: here each look takes
// 20 µs (a hook sleeps in it), and the receiver, whose polling has
// stopped, sleeps after the second look, where the clock is first read,
// not after 16 of them (2.3-3 µs of pauses on this project's machine,
// during which a peer waiting for the CPU could not answer). Reading the
// clock at every look cost more than the pause between looks.
func TestLooksBoundedInTime(t *testing.T) {
	a, b := pair(t)
	b.spinner = spinner{gap: maxGap, skip: 1 << 30} // sleeps once it decides
	var looks, looksBeforeSleep atomic.Int32
	testHookLooked = func(c *Conn) {
		if c == b {
			if b.in.sleeping.Load() == 0 {
				looksBeforeSleep.Add(1)
			}
			looks.Add(1)
			time.Sleep(20 * time.Microsecond)
		}
	}
	defer func() { testHookLooked = nil }()
	lateWaits(t, a, b, 3)
	if n := looksBeforeSleep.Load(); n != 3*2 {
		t.Fatalf("3 waits looked %d times before they slept (%d looks in all), want 2 each: the clock is read every second look", n, looks.Load())
	}
}

// futexSleeper has a thread sleep on the futex word w, as a receive does
// with sleepFutex in it, and returns once the thread sleeps in the kernel
// (its system call, in /proc, is a futex on w). The channel then gets how
// the sleep ended: 0 for a FUTEX_WAKE. The sleep has no time limit, and a
// Go thread in a system call gets no preemption signal: unlike a
// receive's, which the runtime interrupts every 10 ms or so (see
// futex.WaitHoldingP), it ends only when woken, and a missing wake shows.
func futexSleeper(t *testing.T, w *atomic.Uint32) <-chan syscall.Errno {
	t.Helper()
	w.Store(sleepFutex)
	tidc := make(chan int, 1)
	errc := make(chan syscall.Errno, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tidc <- unix.Gettid()
		for {
			_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), 0 /* FUTEX_WAIT */, sleepFutex, 0, 0, 0)
			if errno != unix.EINTR || w.Load() != sleepFutex {
				errc <- errno
				return
			}
		}
	}()
	t.Cleanup(func() { // a sleeper that no wake came to
		w.Store(0)
		futex.Wake(w, 1)
	})
	in := fmt.Sprintf("/proc/self/task/%d/syscall", <-tidc)
	asleep := fmt.Sprintf("%d %#x ", unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)))
	waitUntil(t, func() bool {
		b, _ := os.ReadFile(in)
		return strings.HasPrefix(string(b), asleep)
	})
	return errc
}

// A message, the reader's own Close, the writer's Close and a new read
// deadline each wake, with a FUTEX_WAKE, a thread asleep on the futex of
// the reader's ring (not only the flag: the runtime's preemption would
// hide that from a receive, which then sees the change 10 ms later).
func TestFutexWakes(t *testing.T) {
	for _, c := range []struct {
		name string
		wake func(a, b *Conn) error
	}{
		{"message", func(a, b *Conn) error { return a.SendBytes([]byte("x")) }},
		{"reader's Close", func(a, b *Conn) error { return b.Close() }},
		{"writer's Close", func(a, b *Conn) error { return a.Close() }},
		{"read deadline", func(a, b *Conn) error { b.SetReadDeadline(time.Now().Add(time.Hour)); return nil }},
	} {
		a, b := pair(t)
		errc := futexSleeper(t, b.in.sleeping)
		if err := c.wake(a, b); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		select {
		case errno := <-errc:
			if errno != 0 {
				t.Errorf("%s: the sleep ended with %v, not a wake", c.name, errno)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: no wake in 10 s", c.name)
		}
	}
}

// A Poller follows a ring reader's policy: no polling on one CPU; on
// more, polling while it pays, stopped by five polls in vain in a row,
// and a polling slot held from Start to End.
func TestPollerPolicy(t *testing.T) {
	setProcs(t, 1)
	var p Poller
	if _, ok := p.Start(); ok {
		t.Fatal("a Poller polled on one CPU")
	}
	setProcs(t, 2)
	for i := range 5 {
		until, ok := p.Start()
		if !ok || !until.After(time.Now().Add(-time.Second)) {
			t.Fatalf("poll %d refused while polling paid", i)
		}
		if n := spinners.Load(); n != 1 {
			t.Fatalf("%d polling slots taken during a poll, want 1", n)
		}
		p.End(false)
	}
	if n := spinners.Load(); n != 0 {
		t.Fatalf("%d polling slots taken after the polls ended", n)
	}
	if _, ok := p.Start(); ok {
		t.Fatal("polled again at once after five polls in vain")
	}
}

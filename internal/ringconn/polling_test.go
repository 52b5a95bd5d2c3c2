//go:build linux

package ringconn

import (
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/connerr"
)

// timeToSleep has b receive n messages from a, each sent only once b
// sleeps on its socket, and returns the shortest time from the start of
// a receive to its sleep. A receive that polls first cannot sleep before
// DefaultSpin; one that does not sleeps after a few looks. The shortest
// of n is what the receiver decided, whatever the machine's load adds.
func timeToSleep(t *testing.T, a, b *Conn, n int) time.Duration {
	t.Helper()
	shortest := time.Hour
	for i := range n {
		start := make(chan time.Time, 1)
		done := make(chan error, 1)
		go func() {
			start <- time.Now()
			_, err := b.RecvBytesInto(make([]byte, 8), 0)
			done <- err
		}()
		t0 := <-start
		for b.in.sleeping.Load() == 0 {
			select {
			case err := <-done:
				t.Fatalf("receive %d returned before a message: %v", i, err)
			default:
			}
			runtime.Gosched()
		}
		shortest = min(shortest, time.Since(t0))
		if err := a.SendBytes([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	return shortest
}

// A receiver whose messages come late (each long after it started
// waiting) soon stops polling for them: it sleeps at once, instead of
// burning DefaultSpin of CPU on each wait in vain (on a small machine,
// the CPU the sender needs).
func TestSlowPeerNotPolled(t *testing.T) {
	a, b := pair(t)
	d := timeToSleep(t, a, b, 40)
	t.Logf("shortest time to sleep: %v", d)
	if d >= DefaultSpin/2 {
		t.Fatalf("the receiver polled on every wait for a late peer (shortest time to sleep %v)", d)
	}
	if b.spinner.worth() {
		t.Fatalf("polling still worth it after 40 waits in vain (%+v)", b.spinner)
	}
}

// A process on one core does not poll: its peer cannot run meanwhile.
func TestNoPollingOnOneCore(t *testing.T) {
	defer func() { procsSeen.Store(0) }() // see procs
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	procsSeen.Store(0)
	a, b := pair(t)
	if d := timeToSleep(t, a, b, 5); d >= DefaultSpin/2 {
		t.Fatalf("the receiver polled on one core (%v to sleep)", d)
	}
}

// The spinner's rules: five polls in vain in a row stop polling; then
// tries come after 2, 4, ... waits, up to maxGap; a try that a message
// ends brings back polling on every wait.
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
	want := []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 256}
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

// futexPair is pair with b sleeping on a futex, and b asleep once
// sleepingB returns.
func futexPair(t *testing.T) (a, b *Conn, sleepingB func()) {
	t.Helper()
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one P: receives sleep on the socket")
	}
	a, b = pair(t)
	b.SetFutexSleep(true)
	b.spinner = spinner{gap: maxGap, skip: 1 << 30} // sleeps at once
	return a, b, func() { waitUntil(t, func() bool { return b.in.sleeping.Load() == sleepFutex }) }
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

// A receive that sleeps on a futex is woken by the next message, by a
// futex wake and not a doorbell on the socket.
func TestFutexSleeperWakes(t *testing.T) {
	a, b, sleepingB := futexPair(t)
	for i := range 5 {
		errc := recvAsync(b)
		sleepingB()
		if err := a.SendBytes([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if ok, _ := b.sock.Poll(0); ok {
			t.Fatal("a doorbell on the socket for a futex sleeper")
		}
	}
}

// The receiver's own Close, and the peer's, wake a futex sleeper at once
// (not futexHold later: the bound proves only that it returns).
func TestFutexSleeperClose(t *testing.T) {
	a, b, sleepingB := futexPair(t)
	errc := recvAsync(b)
	sleepingB()
	b.Close()
	if err := <-errc; !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("own Close: %v, want mp.ErrClosed", err)
	}

	a, b, sleepingB = futexPair(t)
	errc = recvAsync(b)
	sleepingB()
	a.Close()
	if err := <-errc; err != io.EOF {
		t.Fatalf("the peer's Close: %v, want io.EOF", err)
	}
}

// A writer that goes without a word (its socket ends, its memory says
// nothing: killed) cannot wake a futex; the sleeper moves to the socket
// after futexHold, sees its end and returns io.EOF once it has read what
// was sent.
func TestFutexSleeperPeerGone(t *testing.T) {
	a, b, sleepingB := futexPair(t)
	errc := recvAsync(b)
	sleepingB()
	start := time.Now()
	a.sock.Close() // not a.Close: no closed flag, no wake
	select {
	case err := <-errc:
		if err != io.EOF {
			t.Fatalf("after the writer's socket ended: %v, want io.EOF", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a futex sleeper did not notice its writer's end")
	}
	t.Logf("noticed after %v", time.Since(start))
}

// A long wait does not keep its P: after futexHold on the futex, the
// receive sleeps on the socket, and the next message's doorbell wakes it.
func TestFutexSleeperMovesToSocket(t *testing.T) {
	a, b, sleepingB := futexPair(t)
	errc := recvAsync(b)
	sleepingB()
	waitUntil(t, func() bool { return b.in.sleeping.Load() == sleepSocket })
	if err := a.SendBytes([]byte("late")); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A wait decides whether to poll or sleep after about a microsecond of
// looks (lookFor), however long its pauses take: here each look takes
// 20 µs (a hook sleeps in it), and the receiver, whose polling has
// stopped, sleeps after the first look, not after 16 of them (2.3-3 µs
// of pauses on this project's machine, during which a peer waiting for
// the CPU could not answer).
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
	timeToSleep(t, a, b, 3)
	if n := looksBeforeSleep.Load(); n > 3*2 {
		t.Fatalf("3 waits looked %d times before they slept (%d looks in all), want at most 2 each", n, looks.Load())
	}
}

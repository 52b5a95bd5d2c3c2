//go:build linux

package ringconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/connerr"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns two connected sides over memory of this process.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	raw := make([]byte, MemSize+64)
	off := (64 - int(uintptr(unsafe.Pointer(&raw[0]))%64)) % 64
	mem := raw[off : off+MemSize]
	sa, sb, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(sa, mem, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(sb, mem, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func recv(t *testing.T, c *Conn) []byte {
	t.Helper()
	buf := make([]byte, 16)
	n, err := c.RecvBytesInto(buf, 0)
	var short *connerr.BufferTooShortError
	if errors.As(err, &short) {
		return short.Message
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestMessagesBothWays(t *testing.T) {
	a, b := pair(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 15, 16, 17, 1000, RingSize - 8, RingSize, RingSize + 1, 3*RingSize + 5, 1 << 20} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		for _, dir := range [][2]*Conn{{a, b}, {b, a}} {
			done := make(chan error, 1)
			go func() { done <- dir[0].SendBytes(msg) }()
			if got := recv(t, dir[1]); !bytes.Equal(got, msg) {
				t.Fatalf("%d bytes: got %d bytes, not the same", size, len(got))
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Many senders, one receiver: messages arrive whole, each sender's in
// order.
func TestConcurrentSenders(t *testing.T) {
	a, b := pair(t)
	const senders, each = 4, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				msg := bytes.Repeat([]byte{byte(s), byte(i)}, 1+i%300)
				if err := a.SendBytes(msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for range senders * each {
		m := recv(t, b)
		s, i := int(m[0]), int(m[1])
		if i != next[s]%256 || len(m) != 2*(1+next[s]%300) {
			t.Fatalf("sender %d: got message %d (%d bytes), want %d", s, i, len(m), next[s])
		}
		next[s]++
	}
	wg.Wait()
}

// A reader that has waited past its polling sleeps on the socket and is
// woken by the next message.
func TestSleepingReaderWakes(t *testing.T) {
	a, b := pair(t)
	for i := range 5 {
		go func() {
			time.Sleep(5 * time.Millisecond) // well past spinFor
			a.SendBytes([]byte{byte(i)})
		}()
		if m := recv(t, b); len(m) != 1 || m[0] != byte(i) {
			t.Fatalf("got %v", m)
		}
	}
}

// The peer's Close: what it sent is read, then io.EOF.
func TestPeerClose(t *testing.T) {
	a, b := pair(t)
	if err := a.SendBytes([]byte("last")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if m := recv(t, b); string(m) != "last" {
		t.Fatalf("got %q", m)
	}
	if _, err := b.RecvBytesInto(make([]byte, 8), 0); err != io.EOF {
		t.Fatalf("after the peer's Close: %v, want io.EOF", err)
	}
	if err := a.SendBytes(nil); !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
}

// Close wakes this side's own sleeping reader.
func TestCloseWakesReader(t *testing.T) {
	_, b := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := b.RecvBytesInto(make([]byte, 8), 0)
		errc <- err
	}()
	time.Sleep(5 * time.Millisecond)
	b.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("receive after Close succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the reader")
	}
}

// A writer facing a full ring whose reader has died gives up.
func TestWriterNoticesDeadReader(t *testing.T) {
	a, _ := pair(t)
	a.out.owner.Store(1<<32 | 0x3ffffffe) // a pid that does not exist
	err := a.SendBytes(make([]byte, 2*RingSize))
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("send to a dead reader: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	_, b := pair(t)
	if _, err := New(nil, make([]byte, 10), true, nil); err == nil {
		t.Fatal("New accepted too little memory")
	}
	if _, err := b.RecvBytesInto(make([]byte, 4), 5); err == nil {
		t.Fatal("offset past the buffer accepted")
	}
}

// rawWrite puts bytes into c's out ring as they are, header or not.
func rawWrite(c *Conn, b []byte) {
	c.wmu.Lock()
	c.write(b)
	c.wmu.Unlock()
}

// The attack of issue 10 point 6: the peer writes ^uint64(0) into the head
// of the ring this side reads and rings the doorbell. The receive fails
// with ErrCorrupt instead of slicing out of range, and so does the next.
func TestCorruptHead(t *testing.T) {
	for _, h := range []uint64{^uint64(0), RingSize + 1, 1 << 40} {
		a, b := pair(t)
		errc := make(chan error, 1)
		go func() {
			_, err := b.RecvBytesInto(make([]byte, 16), 0)
			errc <- err
		}()
		waitUntil(t, func() bool { return a.out.sleeping.Load() == 1 }) // b sleeps on the socket
		a.out.head.Store(h)
		a.ring()
		if err := <-errc; !errors.Is(err, ErrCorrupt) {
			t.Fatalf("head %#x: %v, want ErrCorrupt", h, err)
		}
		if _, err := b.RecvBytesInto(make([]byte, 16), 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("head %#x, second receive: %v, want ErrCorrupt", h, err)
		}
	}
}

// A head that moves backwards, in the middle of a message, is corrupt
// too.
func TestHeadMovesBack(t *testing.T) {
	a, b := pair(t)
	var hdr [8]byte
	hdr[0] = 100
	rawWrite(a, append(hdr[:], 1, 2, 3))
	errc := make(chan error, 1)
	go func() {
		_, err := b.RecvBytesInto(make([]byte, 200), 0)
		errc <- err
	}()
	waitUntil(t, func() bool { return a.out.sleeping.Load() == 1 }) // b read the 11 bytes, waits for more
	a.out.head.Store(4)
	a.ring()
	if err := <-errc; !errors.Is(err, ErrCorrupt) {
		t.Fatalf("head moved back: %v, want ErrCorrupt", err)
	}
}

// The writer checks the reader's tail: one past the head, or moved back,
// fails the send with ErrCorrupt instead of writing out of range.
func TestCorruptTail(t *testing.T) {
	for _, tail := range []uint64{^uint64(0), RingSize + 9, 1} {
		a, _ := pair(t)
		if err := a.SendBytes(make([]byte, RingSize-8)); err != nil { // fills the ring
			t.Fatal(err)
		}
		if tail == 1 {
			a.out.tail.Store(8) // the reader read the header...
			a.SendBytes(nil)    // ...so 8 bytes go in
		}
		a.out.tail.Store(tail)
		if err := a.SendBytes(make([]byte, 100)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("tail %#x: %v, want ErrCorrupt", tail, err)
		}
	}
}

// A writer facing a full ring whose reader has closed (but lives) gives
// up rather than waiting for ever.
func TestWriterNoticesClosedReader(t *testing.T) {
	a, b := pair(t)
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(make([]byte, 2*RingSize)) }()
	waitUntil(t, func() bool { return a.out.head.Load() == RingSize }) // full
	b.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("send to a closed reader: %v, want io.ErrClosedPipe", err)
		}
	case <-time.After(10 * time.Second):
		a.Close()
		t.Fatal("the writer waits for room from a reader that closed")
	}
}

// A length is a claim: announcing 1 GiB and sending 10 bytes costs the
// receiver no more than frame.FirstChunk, whatever the limit.
func TestAnnouncedLengthNotAllocated(t *testing.T) {
	a, b := pair(t)
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], 1<<30)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	errc := make(chan error, 1)
	go func() {
		_, err := b.RecvBytesInto(make([]byte, 16), 0)
		errc <- err
	}()
	rawWrite(a, append(hdr[:], make([]byte, 10)...))
	// The receiver has taken the 18 bytes once it gives their room back,
	// which it does before it sleeps for more.
	waitUntil(t, func() bool { return a.out.sleeping.Load() == 1 })
	runtime.ReadMemStats(&after)
	a.Close()
	if err := <-errc; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("message cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 8<<20 {
		t.Fatalf("announcing 1 GiB and sending 10 bytes allocated %d MiB", grown>>20)
	}
}

// waitUntil polls cond, for at most 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	raw := make([]byte, MemSize+64)
	off := (64 - int(uintptr(unsafe.Pointer(&raw[0]))%64)) % 64
	mem := raw[off : off+MemSize]
	sa, sb, _ := socketPair()
	x, _ := New(sa, mem, true, nil)
	y, _ := New(sb, mem, false, nil)
	defer x.Close()
	defer y.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := y.RecvBytesInto(buf, 0)
			if err != nil || y.SendBytes(buf[:n]) != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64)
	for b.Loop() {
		x.SendBytes([]byte("ping"))
		x.RecvBytesInto(buf, 0)
	}
}

// A message over the limit is skipped, whatever its size, and the
// connection goes on with the next one.
func TestLimit(t *testing.T) {
	a, b := pair(t)
	b.SetLimit(100)
	go func() {
		a.SendBytes(make([]byte, 101))
		a.SendBytes(make([]byte, 3*RingSize+5))
		a.SendBytes([]byte("next"))
	}()
	for _, n := range []int{101, 3*RingSize + 5} {
		if _, err := b.RecvBytesInto(make([]byte, 200), 0); !errors.Is(err, connerr.ErrMessageTooLong) {
			t.Fatalf("%d bytes past a limit of 100: %v", n, err)
		}
	}
	if m := recv(t, b); string(m) != "next" {
		t.Fatalf("after the long messages: %q", m)
	}
}

// Each message's room goes back to the writer as soon as it is read: a
// writer must never wait for room that the reader has already emptied.
func TestRoomGivenBackPerMessage(t *testing.T) {
	a, b := pair(t)
	total := uint64(0)
	for _, n := range []int{1, 100, 5000} {
		if err := a.SendBytes(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		recv(t, b)
		total += 8 + uint64(n)
		if got := a.out.tail.Load(); got != total {
			t.Fatalf("after a %d-byte message the writer sees tail %d, want %d", n, got, total)
		}
	}
}

// A writer facing a full ring whose reader has gone, though its memory
// says it is alive and open, gives up once the reader's socket has ended.
func TestWriterNoticesSocketEnd(t *testing.T) {
	a, b := pair(t)
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(make([]byte, 2*RingSize)) }()
	waitUntil(t, func() bool { return a.out.head.Load() == RingSize }) // full
	// The reader's socket ends; its memory still says it is open, and
	// its owner word names a live process (this one).
	b.sock.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("send to a reader whose socket ended: %v, want io.ErrClosedPipe", err)
		}
	case <-time.After(10 * time.Second):
		a.Close()
		t.Fatal("the writer waits for room from a reader whose socket ended")
	}
}

// SendBatch sends its messages as SendBytes would one by one, also when
// together, or one alone, they are larger than the ring; Buffered tells
// whether a message waits.
func TestSendBatch(t *testing.T) {
	a, b := pair(t)
	if b.Buffered() {
		t.Fatal("Buffered on an empty ring")
	}
	var msgs [][]byte
	for i, size := range []int{0, 5, RingSize / 3, RingSize / 3, 3 * RingSize, 1} {
		msgs = append(msgs, bytes.Repeat([]byte{byte(i + 1)}, size))
	}
	done := make(chan error, 1)
	go func() { done <- a.SendBatch(msgs) }()
	for i, want := range msgs {
		if i == 1 {
			waitUntil(t, b.Buffered)
		}
		if got := recv(t, b); !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.Buffered() {
		t.Fatal("Buffered after every message was read")
	}
	a.Close()
	if err := a.SendBatch(msgs); !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("SendBatch after Close: %v", err)
	}
}

// A writer that sends its last message and closes between the reader's
// look at the head and its look at the closed flag: the reader still
// gets the message, then io.EOF (before, io.EOF at once, and the message
// was lost: a pool worker's last result, 2-3 runs in 100).
func TestLastMessageBeforeCloseNotLost(t *testing.T) {
	a, b := pair(t)
	fired := false
	testHookLooked = func(c *Conn) {
		if c == b && !fired {
			fired = true
			if err := a.SendBytes([]byte{7}); err != nil {
				t.Error(err)
			}
			a.Close()
		}
	}
	defer func() { testHookLooked = nil }()
	buf := make([]byte, 8)
	n, err := b.RecvBytesInto(buf, 0)
	if !fired {
		t.Fatal("the hook did not run: the race was not made")
	}
	if err != nil || n != 1 || buf[0] != 7 {
		t.Fatalf("receive after the writer's last send and close: %d bytes %v, %v; want the message", n, buf[:n], err)
	}
	if _, err := b.RecvBytesInto(buf, 0); !errors.Is(err, io.EOF) {
		t.Fatalf("then: %v, want io.EOF", err)
	}
}

// A Conn closed by one goroutine while another still uses it: the calls
// that read the shared memory under the receive lock see the Close and
// leave the memory alone, which Close unmaps (keep). Buffered read it
// after the unmapping: a pool's reader, asking whether more results
// waited as the pool closed the worker's link, faulted (SIGSEGV).
func TestCallsAfterCloseLeaveMemory(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	a, err := New(sa, mem, true, unmapper(mem))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if a.Buffered() {
		t.Fatal("Buffered after Close")
	}
	if err := a.SkipTo(0); !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("SkipTo after Close: %v", err)
	}
	if _, err := a.RecvBytesInto(make([]byte, 8), 0); !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("RecvBytesInto after Close: %v", err)
	}
	if err := a.SendBytes([]byte("x")); !errors.Is(err, connerr.ErrClosed) {
		t.Fatalf("SendBytes after Close: %v", err)
	}
}

// unmapper unmaps mem when closed.
type unmapper []byte

func (u unmapper) Close() error { return unix.Munmap(u) }

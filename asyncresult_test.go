//go:build linux

package mp

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A result's Done channel works whether it was asked for before or after
// the result came in.
func TestAsyncResultDone(t *testing.T) {
	early := newAsyncResult[int]()
	done := early.Done()
	if early.Ready() {
		t.Fatal("ready before resolve")
	}
	if _, err := early.Successful(); err == nil {
		t.Fatal("Successful before resolve gave no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := early.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get before resolve: %v", err)
	}
	go early.resolve(7, nil)
	<-done
	if v, err := early.Get(context.Background()); v != 7 || err != nil {
		t.Fatalf("Get = %d, %v", v, err)
	}

	late := newAsyncResult[int]()
	boom := errors.New("boom")
	late.resolve(0, boom)
	select {
	case <-late.Done():
	default:
		t.Fatal("Done after resolve is not closed")
	}
	if ok, err := late.Successful(); ok || err != nil {
		t.Fatalf("Successful = %v, %v", ok, err)
	}
	if err := late.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := late.Get(context.Background()); err != boom {
		t.Fatalf("Get = %v", err)
	}
}

// Two callers of Done that both saw the result pending, and take the
// result's lock after it came in, both get a closed channel: the first
// finds the result in as it makes the channel, and must not leave that
// channel, which nobody closes, for the second. The callers are held on
// the lock (seen in their stacks) while the result comes.
func TestAsyncResultDoneRacesResult(t *testing.T) {
	a := newAsyncResult[int]()
	mu := a.lock()
	mu.Lock()
	got := make(chan (<-chan struct{}), 2)
	for range 2 {
		go func() { got <- a.Done() }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for blockedInDone() < 2 {
		if time.Now().After(deadline) {
			mu.Unlock()
			t.Fatal("the callers of Done never waited for the lock")
		}
		time.Sleep(time.Millisecond)
	}
	a.resolve(7, nil)
	mu.Unlock()
	for i := range 2 {
		select {
		case <-<-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("caller %d of Done got a channel never closed", i)
		}
	}
}

// blockedInDone counts the goroutines waiting in AsyncResult.Done for a
// lock.
func blockedInDone() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, "AsyncResult[...]).Done") {
			n++
		}
	}
	return n
}

//go:build linux

package futex

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitWake(t *testing.T) {
	var w atomic.Uint32
	if !Wait(&w, 0, time.Millisecond) {
		t.Fatal("Wait with a 1ms timeout did not time out")
	}
	if Wait(&w, 1, time.Second) {
		t.Fatal("Wait on a changed value slept until its timeout")
	}
	done := make(chan bool)
	go func() {
		for w.Load() == 0 {
			Wait(&w, 0, -1)
		}
		done <- true
	}()
	time.Sleep(10 * time.Millisecond)
	w.Store(1)
	Wake(&w, 1)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not wake the waiter")
	}
	if Wake(&w, 0) != 0 {
		t.Fatal("Wake(0) woke someone")
	}
}

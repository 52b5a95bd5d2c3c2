//go:build linux

package mp

import (
	"context"
	"errors"
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

package main

import (
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestManagerServeHandshakeTimeout: -handshake-timeout reaches the
// listener: a silent peer is dropped after it, well before the default.
func TestManagerServeHandshakeTimeout(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := []string{"MP_AUTHKEY=hex:0123456789abcdef0123456789abcdef"}
	serve, lines := startServe(t, ctx, bin, env, "-addr", "127.0.0.1:0", "-handshake-timeout", "200ms")
	addr, ok := strings.CutPrefix(lines[0], "serving on tcp ")
	if !ok {
		t.Fatalf("serve printed %q", lines)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The challenge comes first, then the end once the timeout passes;
	// the default (10 s) would outlast this deadline.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("silent peer not dropped: %v", err)
	}
	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

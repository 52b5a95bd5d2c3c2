//go:build linux

package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/testcert"
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

// certFiles writes a CA's certificates and keys into a new directory.
func certFiles(t *testing.T, name string) string {
	t.Helper()
	dir, err := testcert.ForTest(t, name).Files(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestManagerServeTLS: serve with -tls-cert, -tls-key and -tls-ca serves
// a client with the matching flags; a plain client, one that does not
// trust the server's CA and one without a client certificate are refused
// with clear errors, and the server keeps serving. A key file that others
// can read gets one warning, and works.
func TestManagerServeTLS(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	certs := certFiles(t, "mp cmd test CA")
	other := certFiles(t, "another CA")
	in := func(dir, name string) string { return filepath.Join(dir, name) }
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("hex:00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serve, lines := startServe(t, ctx, bin, []string{"MP_AUTHKEY=hex:00112233445566778899aabbccddeeff"}, "-addr", "127.0.0.1:0",
		"-tls-cert", in(certs, "server.pem"), "-tls-key", in(certs, "server-key.pem"), "-tls-ca", in(certs, "ca.pem"))
	addr, ok := strings.CutPrefix(lines[0], "serving on tcp ")
	if !ok {
		t.Fatalf("serve printed %q", lines)
	}
	stats := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"manager", "stats", "-addr", addr, "-authkey-file", keyFile}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	good := []string{"-tls-ca", in(certs, "ca.pem"), "-tls-cert", in(certs, "client.pem"), "-tls-key", in(certs, "client-key.pem")}
	if out, err := stats(good...); err != nil || !strings.Contains(out, "objects 0") {
		t.Fatalf("TLS client: %v\n%s", err, out)
	}
	out, err := stats()
	if err == nil || !strings.Contains(out, "requires TLS") {
		t.Errorf("plain client: %v\n%s", err, out)
	}
	t.Logf("plain client: %s", out)
	wrongCA := []string{"-tls-ca", in(other, "ca.pem"), "-tls-cert", in(certs, "client.pem"), "-tls-key", in(certs, "client-key.pem")}
	out, err = stats(wrongCA...)
	if err == nil || !strings.Contains(out, "certificate signed by unknown authority") {
		t.Errorf("client that does not trust the server's CA: %v\n%s", err, out)
	}
	t.Logf("client that does not trust the server's CA: %s", out)
	out, err = stats("-tls-ca", in(certs, "ca.pem"))
	if err == nil || !strings.Contains(out, "certificate required") {
		t.Errorf("client without a certificate: %v\n%s", err, out)
	}
	t.Logf("client without a certificate: %s", out)

	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = stats(good...)
	if err != nil || !strings.Contains(out, "objects 0") {
		t.Fatalf("TLS client after the rest: %v\n%s", err, out)
	}
	if n := strings.Count(out, "WARNING"); n != 1 || !strings.Contains(out, keyFile) {
		t.Errorf("%d warnings about a key file others can read:\n%s", n, out)
	}

	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

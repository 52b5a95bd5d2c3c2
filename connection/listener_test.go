//go:build linux

package connection_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/auth"
	"github.com/go-mp/mp/internal/frame"
	"github.com/go-mp/mp/internal/pytest"
)

var (
	testKey  = []byte("connection test key")
	wrongKey = []byte("not the key")
)

// within returns a context that ends after d, cancelled at the end of the
// test.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// listen starts a Listener closed at the end of the test; its handshake
// errors arrive on the returned channel.
func listen(t *testing.T, network, address string, key []byte, timeout time.Duration) (*connection.Listener, chan error) {
	t.Helper()
	errs := make(chan error, 64)
	lc := connection.ListenConfig{
		HandshakeTimeout: timeout,
		OnHandshakeError: func(_ net.Addr, err error) { errs <- err },
	}
	l, err := lc.Listen(network, address, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, errs
}

type accepted struct {
	c   *mp.Conn
	err error
}

// acceptOne calls Accept in a goroutine.
func acceptOne(t *testing.T, l *connection.Listener) <-chan accepted {
	ch := make(chan accepted, 1)
	ctx := within(t, 20*time.Second)
	go func() {
		c, err := l.Accept(ctx)
		ch <- accepted{c, err}
	}()
	return ch
}

func (a accepted) conn(t *testing.T) *mp.Conn {
	t.Helper()
	if a.err != nil {
		t.Fatalf("Accept: %v", a.err)
	}
	t.Cleanup(func() { a.c.Close() })
	return a.c
}

// nextErr waits for the Listener to report a failed handshake.
func nextErr(t *testing.T, errs chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("no handshake error reported")
		return nil
	}
}

type point struct {
	X, Y int
	Tag  string
}

// exchange sends bytes and values both ways between a and b.
func exchange(t *testing.T, a, b *mp.Conn) {
	t.Helper()
	for _, dir := range []struct {
		from, to *mp.Conn
		name     string
	}{{a, b, "a→b"}, {b, a, "b→a"}} {
		msg := []byte("bytes " + dir.name)
		if err := dir.from.SendBytes(msg); err != nil {
			t.Fatal(err)
		}
		got, err := dir.to.RecvBytes(0)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: got %q, %v", dir.name, got, err)
		}
		want := point{X: 3, Y: -4, Tag: dir.name}
		if err := dir.from.Send(want); err != nil {
			t.Fatal(err)
		}
		var p point
		if err := dir.to.Recv(&p); err != nil || p != want {
			t.Fatalf("%s: got %+v, %v", dir.name, p, err)
		}
	}
}

// checkServes connects a good client and exchanges messages with it.
func checkServes(t *testing.T, l *connection.Listener, key []byte) {
	t.Helper()
	acc := acceptOne(t, l)
	c, err := connection.Dial(within(t, 20*time.Second), l.Addr().Network(), l.Addr().String(), key)
	if err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	defer c.Close()
	s := (<-acc).conn(t)
	defer s.Close()
	exchange(t, c, s)
}

func TestListenDial(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "sock")
			}
			l, _ := listen(t, network, addr, testKey, 0)
			checkServes(t, l, testKey)
			checkServes(t, l, testKey) // the listener goes on serving
		})
	}
}

func TestListenDialProcessKey(t *testing.T) {
	l, _ := listen(t, "unix", "", nil, 0)
	checkServes(t, l, nil)
	checkServes(t, l, mp.CurrentProcess().Authkey)
}

func TestClientGuessesNetwork(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		l, _ := listen(t, network, "", testKey, 0)
		acc := acceptOne(t, l)
		c, err := connection.Client(within(t, 20*time.Second), l.Addr().String(), testKey)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		exchange(t, c, (<-acc).conn(t))
		c.Close()
	}
}

func TestDialWrongKey(t *testing.T) {
	l, errs := listen(t, "tcp", "", testKey, 0)
	c, err := connection.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), wrongKey)
	if !errors.Is(err, mp.ErrAuthentication) || c != nil {
		t.Fatalf("Dial with a wrong key: %v", err)
	}
	if err := nextErr(t, errs); !errors.Is(err, mp.ErrAuthentication) {
		t.Fatalf("listener reported %v", err)
	}
	checkServes(t, l, testKey)
}

// TestDialRejectsImpostor: a listener that welcomes any answer but does
// not know the key fails the client's own challenge.
func TestDialRejectsImpostor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		s := auth.Stream{RW: nc}
		s.SendBytes([]byte("#CHALLENGE#{sha256}0123456789012345678901234567890123456789"))
		s.RecvBytes(256)
		s.SendBytes([]byte("#WELCOME#")) // whatever the answer
		done <- auth.AnswerChallenge(s, wrongKey)
	}()
	c, err := connection.Dial(within(t, 20*time.Second), "tcp", ln.Addr().String(), testKey)
	if !errors.Is(err, mp.ErrAuthentication) || c != nil {
		t.Fatalf("Dial to an impostor: %v", err)
	}
	if err := <-done; !errors.Is(err, auth.ErrAuthentication) {
		t.Fatalf("impostor: %v", err)
	}
}

func TestDialContext(t *testing.T) {
	// A listener that accepts and then says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, nc)
			nc.Close()
		}
	}()
	defer wg.Wait()
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := connection.Dial(ctx, "tcp", ln.Addr().String(), testKey); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := connection.Dial(ctx, "tcp", ln.Addr().String(), testKey); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
}

func TestListenAcceptAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sock")
	l, err := connection.Listen("unix", path, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept with an expired context: %v", err)
	}
	acc := acceptOne(t, l)
	time.Sleep(10 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if a := <-acc; !errors.Is(a.err, mp.ErrClosed) {
		t.Fatalf("Accept during Close: %v", a.err)
	}
	if _, err := l.Accept(context.Background()); !errors.Is(err, mp.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left: %v", err)
	}

	// An unnamed socket is abstract: no file, and its name goes with it.
	l, err = connection.Listen("unix", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if !strings.HasPrefix(addr, "@mp-listener-") {
		t.Fatalf("unnamed unix socket at %q, want an abstract one", addr)
	}
	l.Close()
	if c, err := connection.Dial(within(t, 20*time.Second), "unix", addr, nil); err == nil {
		c.Close()
		t.Fatal("abstract socket still listening after Close")
	}
}

// TestListenClosesPendingConns: connections authenticated but never
// accepted are closed by Close.
func TestListenClosesPendingConns(t *testing.T) {
	l, err := connection.Listen("tcp", "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := acceptOne(t, l)
	var clients []*mp.Conn
	for range 3 {
		c, err := connection.Dial(within(t, 20*time.Second), "tcp", l.Addr().String(), testKey)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	(<-acc).conn(t).Close()
	l.Close()
	// The accepted one was closed by hand, the others by Close.
	for i, c := range clients {
		if ok, err := c.Poll(10 * time.Second); !ok || err != nil {
			t.Fatalf("client %d: still open after Close (%v)", i, err)
		}
		if _, err := c.RecvBytes(0); err != io.EOF {
			t.Fatalf("client %d: %v", i, err)
		}
	}
}

func TestListenOffLoopback(t *testing.T) {
	// Nothing is ever sent to these listeners.
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		l, err := connection.Listen("tcp", addr, nil)
		if err == nil {
			l.Close()
			t.Errorf("%s: listening off loopback with the process key", addr)
		} else if !strings.Contains(err.Error(), "authkey") {
			t.Errorf("%s: unclear error %v", addr, err)
		}
	}
	l, err := connection.Listen("tcp", "0.0.0.0:0", testKey)
	if err != nil {
		t.Fatalf("with an explicit key: %v", err)
	}
	l.Close()
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", ""} {
		l, err := connection.Listen("tcp", addr, nil)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		l.Close()
	}
}

func TestListenBadArguments(t *testing.T) {
	if _, err := connection.Listen("udp", "127.0.0.1:0", testKey); err == nil {
		t.Error("udp accepted")
	}
	if _, err := connection.Listen("unix", "", []byte{}); err == nil {
		t.Error("empty authkey accepted")
	}
	if _, err := connection.Dial(context.Background(), "udp", "127.0.0.1:1", testKey); err == nil {
		t.Error("Dial over udp accepted")
	}
}

// rawPeer connects to l without authenticating.
func rawPeer(t *testing.T, l *connection.Listener) net.Conn {
	t.Helper()
	nc, err := net.Dial(l.Addr().Network(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return nc
}

func frameOf(b []byte) []byte { return append(frame.AppendHeader(nil, len(b)), b...) }

func isAuth(err error) bool { return errors.Is(err, mp.ErrAuthentication) }

// TestListenBadPeers: each bad peer gets a clear error and is closed, and
// the listener serves a good client afterwards.
func TestListenBadPeers(t *testing.T) {
	l, errs := listen(t, "tcp", "", testKey, 0)
	cases := []struct {
		name string
		peer func(nc net.Conn)
		want func(error) bool
	}{
		{"garbage", func(nc net.Conn) { nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }, isAuth},
		{"huge length", func(nc net.Conn) {
			nc.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		}, isAuth},
		{"negative length", func(nc net.Conn) { nc.Write([]byte{0xff, 0xff, 0xff, 0x00}) }, isAuth},
		{"oversized answer", func(nc net.Conn) { nc.Write(frameOf(make([]byte, 300))) }, isAuth},
		{"malformed answer", func(nc net.Conn) { nc.Write(frameOf([]byte("not a digest but thirty bytes!"))) }, isAuth},
		{"legacy answer, wrong key", func(nc net.Conn) { nc.Write(frameOf(make([]byte, 16))) }, isAuth},
		{"truncated frame", func(nc net.Conn) {
			nc.Write([]byte{0, 0, 0, 32, 'a', 'b', 'c'})
			nc.(*net.TCPConn).CloseWrite()
		}, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"hang up", func(nc net.Conn) { nc.Close() }, func(err error) bool {
			return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
		}},
		{"message instead of a challenge", func(nc net.Conn) {
			s := auth.Stream{RW: nc}
			if err := auth.AnswerChallenge(s, testKey); err != nil {
				t.Errorf("answering: %v", err)
			}
			s.SendBytes([]byte("hello, let me in"))
		}, isAuth},
		{"short challenge", func(nc net.Conn) {
			s := auth.Stream{RW: nc}
			auth.AnswerChallenge(s, testKey)
			s.SendBytes([]byte("#CHALLENGE#abc"))
		}, isAuth},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc := rawPeer(t, l)
			c.peer(nc)
			// The listener closes the peer: reading ends.
			io.Copy(io.Discard, nc)
			if err := nextErr(t, errs); !c.want(err) {
				t.Fatalf("listener reported %v", err)
			}
			checkServes(t, l, testKey)
		})
	}
}

// TestListenSlowPeers: silent peers do not delay a good client, and a
// silent peer is dropped after HandshakeTimeout.
func TestListenSlowPeers(t *testing.T) {
	l, errs := listen(t, "tcp", "", testKey, time.Minute)
	var silent []net.Conn
	for range 5 {
		silent = append(silent, rawPeer(t, l))
	}
	garbage := rawPeer(t, l)
	garbage.Write([]byte("garbage!"))
	checkServes(t, l, testKey) // while the silent ones are still pending
	if err := nextErr(t, errs); !isAuth(err) {
		t.Fatalf("garbage: %v", err)
	}
	select {
	case err := <-errs:
		t.Fatalf("a silent peer was dropped early: %v", err)
	default:
	}
	for _, nc := range silent {
		nc.Close()
		if err := nextErr(t, errs); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("silent peer hung up: %v", err)
		}
	}

	l, errs = listen(t, "unix", "", testKey, 200*time.Millisecond)
	nc := rawPeer(t, l)
	if err := nextErr(t, errs); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent peer: %v", err)
	}
	got, _ := io.ReadAll(nc) // the challenge, then the end
	if !bytes.Contains(got, []byte("#CHALLENGE#{sha256}")) {
		t.Fatalf("peer got %q", got)
	}
	checkServes(t, l, testKey)
}

// ---- against CPython ----

// pythons returns the interpreters to test against: python3, which is
// required, and CPython 3.12 and 3.13 where installed (package pytest).
func pythons(t *testing.T) []pytest.Interp { return pytest.All(t) }

// pyProc is a python3 peer whose stdout is read line by line.
type pyProc struct {
	cmd    *exec.Cmd
	out    *bufio.Scanner
	stderr bytes.Buffer
	once   sync.Once
	err    error
}

func startPy(t *testing.T, python, script string, args ...string) *pyProc {
	t.Helper()
	return startPyStdin(t, python, "", script, args...)
}

// startPyStdin is startPy with stdin as the peer's standard input.
func startPyStdin(t *testing.T, python, stdin, script string, args ...string) *pyProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p := &pyProc{cmd: exec.CommandContext(ctx, python, append([]string{"-c", script}, args...)...)}
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.wait()
		cancel()
	})
	return p
}

func (p *pyProc) line(t *testing.T) string {
	t.Helper()
	if !p.out.Scan() {
		p.wait()
		t.Fatalf("python ended (%v): %s", p.err, p.stderr.String())
	}
	return p.out.Text()
}

// wait reaps the process and returns its exit code.
func (p *pyProc) wait() int {
	p.once.Do(func() {
		for p.out.Scan() {
		}
		p.err = p.cmd.Wait()
	})
	return p.cmd.ProcessState.ExitCode()
}

const pyListener = `
import sys
from multiprocessing.connection import Listener, AuthenticationError
key = bytes.fromhex(sys.argv[1])
addr = sys.argv[3] if sys.argv[2] == 'unix' else ('127.0.0.1', 0)
with Listener(addr, authkey=key) as l:
    a = l.address
    print(a if isinstance(a, str) else '%s:%d' % a, flush=True)
    try:
        c = l.accept()
    except AuthenticationError as e:
        print('AUTHFAIL', e, flush=True)
        sys.exit(3)
    with c:
        c.send_bytes(b'py:' + c.recv_bytes())
        c.send_bytes(b'from python')
        print('GOT', c.recv_bytes().decode(), flush=True)
`

const pyClient = `
import sys
from multiprocessing.connection import Client, AuthenticationError
key = bytes.fromhex(sys.argv[1])
addr = sys.argv[2]
if addr.startswith('@'):
    addr = '\0' + addr[1:]  # an abstract unix socket, as Python names it
if sys.argv[3] == 'tcp':
    host, port = addr.rsplit(':', 1)
    addr = (host, int(port))
try:
    c = Client(addr, authkey=key)
except AuthenticationError as e:
    print('AUTHFAIL', e, flush=True)
    sys.exit(3)
with c:
    c.send_bytes(b'hello from python')
    print('GOT', c.recv_bytes().decode(), flush=True)
`

// TestDialPythonListener: Dial against multiprocessing.connection.Listener.
func TestDialPythonListener(t *testing.T) {
	for _, py := range pythons(t) {
		for _, network := range []string{"unix", "tcp"} {
			t.Run(py.Version+"/"+network, func(t *testing.T) {
				sock := filepath.Join(t.TempDir(), "py.sock")
				p := startPy(t, py.Path, pyListener, hex.EncodeToString(testKey), network, sock)
				c, err := connection.Dial(within(t, 30*time.Second), network, p.line(t), testKey)
				if err != nil {
					t.Fatalf("Dial: %v (python: %s)", err, p.stderr.String())
				}
				defer c.Close()
				if err := c.SendBytes([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				for _, want := range []string{"py:hello", "from python"} {
					if got, err := c.RecvBytes(0); err != nil || string(got) != want {
						t.Fatalf("got %q, %v; want %q", got, err, want)
					}
				}
				if err := c.SendBytes([]byte("bye")); err != nil {
					t.Fatal(err)
				}
				if got := p.line(t); got != "GOT bye" {
					t.Fatalf("python printed %q", got)
				}
				if code := p.wait(); code != 0 {
					t.Fatalf("python exited %d: %s", code, p.stderr.String())
				}
			})
			t.Run(py.Version+"/"+network+"/wrong key", func(t *testing.T) {
				sock := filepath.Join(t.TempDir(), "py.sock")
				p := startPy(t, py.Path, pyListener, hex.EncodeToString(testKey), network, sock)
				c, err := connection.Dial(within(t, 30*time.Second), network, p.line(t), wrongKey)
				if !errors.Is(err, mp.ErrAuthentication) || c != nil {
					t.Fatalf("Dial with a wrong key: %v", err)
				}
				if got := p.line(t); !strings.HasPrefix(got, "AUTHFAIL") {
					t.Fatalf("python printed %q", got)
				}
				if code := p.wait(); code != 3 {
					t.Fatalf("python exited %d: %s", code, p.stderr.String())
				}
			})
		}
	}
}

// TestClientPythonToListener: multiprocessing.connection.Client against a
// Listener.
func TestClientPythonToListener(t *testing.T) {
	for _, py := range pythons(t) {
		for _, network := range []string{"unix", "tcp"} {
			t.Run(py.Version+"/"+network, func(t *testing.T) {
				l, _ := listen(t, network, "", testKey, 0)
				acc := acceptOne(t, l)
				p := startPy(t, py.Path, pyClient, hex.EncodeToString(testKey), l.Addr().String(), network)
				s := (<-acc).conn(t)
				if got, err := s.RecvBytes(0); err != nil || string(got) != "hello from python" {
					t.Fatalf("got %q, %v", got, err)
				}
				if err := s.SendBytes([]byte("hi python")); err != nil {
					t.Fatal(err)
				}
				if got := p.line(t); got != "GOT hi python" {
					t.Fatalf("python printed %q", got)
				}
				if code := p.wait(); code != 0 {
					t.Fatalf("python exited %d: %s", code, p.stderr.String())
				}
				if _, err := s.RecvBytes(0); err != io.EOF {
					t.Fatalf("after python closed: %v", err)
				}
			})
			t.Run(py.Version+"/"+network+"/wrong key", func(t *testing.T) {
				l, errs := listen(t, network, "", testKey, 0)
				p := startPy(t, py.Path, pyClient, hex.EncodeToString(wrongKey), l.Addr().String(), network)
				acc := acceptOne(t, l)
				if err := nextErr(t, errs); !errors.Is(err, mp.ErrAuthentication) {
					t.Fatalf("listener reported %v", err)
				}
				if got := p.line(t); !strings.HasPrefix(got, "AUTHFAIL") {
					t.Fatalf("python printed %q", got)
				}
				if code := p.wait(); code != 3 {
					t.Fatalf("python exited %d: %s", code, p.stderr.String())
				}
				// The failed peer never reaches Accept; a good one does.
				c, err := connection.Dial(within(t, 20*time.Second), network, l.Addr().String(), testKey)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				exchange(t, c, (<-acc).conn(t))
			})
		}
	}
}

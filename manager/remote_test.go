//go:build linux

package manager_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/manager"
)

// The test binary, run with roleEnv set, acts as an independent program
// (not an mp child: it shares nothing with the test but what it is told)
// that connects to a manager over TCP.
const (
	roleEnv = "MP_MANAGER_TEST_ROLE"
	addrEnv = "MP_MANAGER_TEST_ADDR"
	itemsN  = 5
)

// runRole runs one role and returns the exit code.
func runRole(role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := role1(ctx, role); err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	return 0
}

func role1(ctx context.Context, role string) error {
	key, err := manager.AuthkeyFromEnv()
	if err != nil {
		return err
	}
	m, err := manager.Connect(ctx, "tcp", os.Getenv(addrEnv), key)
	if err != nil {
		return err
	}
	defer m.Close()
	q, err := manager.NewQueue[string](ctx, m, 0, manager.Named("jobs"))
	if err != nil {
		return err
	}
	switch role {
	case "put":
		for i := range itemsN {
			if err := q.Put(ctx, "item "+strconv.Itoa(i)); err != nil {
				return err
			}
		}
	case "get":
		for range itemsN {
			s, err := q.Get(ctx)
			if err != nil {
				return err
			}
			fmt.Println(s)
		}
	default:
		return fmt.Errorf("unknown role")
	}
	return nil
}

// serveHere serves l in this process until the end of the test, and
// fails the test if serving fails.
func serveHere(t *testing.T, ctx context.Context, l *connection.Listener) {
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- manager.Serve(sctx, l) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
}

// TestTwoProgramsOverTCP serves a queue over TCP; one program gets from it
// (and waits, having started first) while another puts to it.
func TestTwoProgramsOverTCP(t *testing.T) {
	ctx := testCtx(t)
	const hexKey = "hex:00112233445566778899aabbccddeeff"
	key, err := manager.ParseAuthkey(hexKey)
	check(t, err)
	l, err := connection.Listen("tcp", "127.0.0.1:0", key)
	check(t, err)
	serveHere(t, ctx, l)

	run := func(role string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"="+role, addrEnv+"="+l.Addr().String(), manager.AuthkeyEnv+"="+hexKey)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		check(t, cmd.Start())
		return cmd, &out
	}
	getter, got := run("get")
	time.Sleep(100 * time.Millisecond) // let it wait in Get (not needed for correctness)
	putter, put := run("put")
	if err := putter.Wait(); err != nil {
		t.Fatalf("putter: %v\n%s", err, put)
	}
	if err := getter.Wait(); err != nil {
		t.Fatalf("getter: %v\n%s", err, got)
	}
	want := "item 0\nitem 1\nitem 2\nitem 3\nitem 4\n"
	if got.String() != want {
		t.Errorf("getter printed %q, want %q", got, want)
	}

	// A program with the wrong key is turned away.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=get", addrEnv+"="+l.Addr().String(), manager.AuthkeyEnv+"=wrong")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "authentication") {
		t.Errorf("a program with the wrong key: %v\n%s", err, out)
	}
}

func TestAuthkeyForms(t *testing.T) {
	for in, want := range map[string]string{
		"hex:616263": "abc",
		"abc":        "abc",
		"HEX:6162":   "HEX:6162",
		"hex:":       "",
		"hex:zz":     "",
		"":           "",
	} {
		got, err := manager.ParseAuthkey(in)
		if (err != nil) != (want == "") || string(got) != want {
			t.Errorf("ParseAuthkey(%q) = %q, %v", in, got, err)
		}
	}
	f := t.TempDir() + "/key"
	check(t, os.WriteFile(f, []byte("hex:6b6579\n"), 0o600))
	k, err := manager.ReadAuthkeyFile(f)
	if err != nil || string(k) != "key" {
		t.Errorf("ReadAuthkeyFile = %q, %v", k, err)
	}
}

//go:build linux

// Command pyinterop has a Go program and a Python program work together:
// a Go manager server that also serves CPython's manager clients, a
// queue and a dict both reach by name, and a shared memory block Python
// attaches to by its name. python3 (3.11 or later) must be on PATH.
// Run it with: go run ./examples/pyinterop
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"os/exec"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

// worker is the Python program, worker.py next to this file.
//
//go:embed worker.py
var worker string

func main() {
	mp.Main() // first: in a child (the manager server), serves and exits

	python, err := exec.LookPath("python3")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pyinterop: python3 is not on PATH: this example runs a Python program (3.11 or later)")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, python); err != nil {
		fmt.Fprintln(os.Stderr, "pyinterop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, python string) error {
	// A manager server (a child process) on TCP, serving Python clients
	// too, with a key both programs know.
	key := make([]byte, 32)
	rand.Read(key)
	m, err := manager.Start(ctx, &manager.Options{Network: "tcp", Address: "127.0.0.1:0", Authkey: key, Python: true})
	if err != nil {
		return err
	}
	defer m.Shutdown(ctx)

	jobs, err := manager.NewQueue[string](ctx, m, 0, manager.Named("jobs"))
	if err != nil {
		return err
	}
	results, err := manager.NewDict[string, int](ctx, m, manager.Named("results"))
	if err != nil {
		return err
	}
	for _, job := range []string{"resize photo-1.jpg", "resize photo-22.jpg", ""} { // "": no more jobs
		if err := jobs.Put(ctx, job); err != nil {
			return err
		}
	}
	fmt.Println("go: put 2 jobs on the queue \"jobs\"")

	// A block in /dev/shm that Python attaches to by name. Go made it, so
	// Go unlinks it.
	const n = 1000
	shm, err := mp.NewSharedMemory("", 8*n, mp.WithPOSIXName())
	if err != nil {
		return err
	}
	defer shm.Unlink()
	defer shm.Close()
	mem := shm.Bytes()
	for i := range n {
		binary.NativeEndian.PutUint64(mem[8*i:], math.Float64bits(float64(i)))
	}
	fmt.Printf("go: wrote %d float64s (0 to %d) to shared memory %q\n", n, n-1, shm.Name())

	cmd := exec.CommandContext(ctx, python, "-c", worker, m.Address(), shm.Name())
	cmd.Env = append(os.Environ(), "MP_AUTHKEY="+hex.EncodeToString(key))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("python3: %w", err)
	}

	items, err := results.Items(ctx)
	if err != nil {
		return err
	}
	for _, it := range items {
		fmt.Printf("go: results[%q] = %d\n", it.Key, it.Value)
	}
	var sum float64
	for i := range n {
		sum += math.Float64frombits(binary.NativeEndian.Uint64(mem[8*i:]))
	}
	fmt.Printf("go: the float64s Python doubled now sum to %g\n", sum)
	return nil
}

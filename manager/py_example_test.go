//go:build linux

package manager_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"

	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/manager"
)

// A Go program and a Python program share a manager: the Go server
// serves CPython's SyncManager clients too, and the Python program
// reaches the queue the Go program named "jobs" by registering get_jobs.
func ExampleServer_python() {
	ctx, stop := context.WithCancel(context.Background())
	key := []byte("a key both programs know")
	l, err := connection.Listen("tcp", "127.0.0.1:0", key)
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- (&manager.Server{Python: true}).Serve(ctx, l) }()

	// The Go program puts a job...
	m, err := manager.Connect(ctx, "tcp", l.Addr().String(), key)
	if err != nil {
		log.Fatal(err)
	}
	jobs, _ := manager.NewQueue[string](ctx, m, 0, manager.Named("jobs"))
	jobs.Put(ctx, "job 1")
	results, _ := manager.NewDict[string, int](ctx, m, manager.Named("results"))

	// ...which a Python program takes, recording a result.
	python := exec.Command("python3", "-c", `
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register("get_jobs")
M.register("get_results")
host, port = sys.argv[1].rsplit(":", 1)
m = M(address=(host, int(port)), authkey=b"a key both programs know")
m.connect()
job = m.get_jobs().get()
m.get_results()[job] = len(job)
`, l.Addr().String())
	python.Stderr = os.Stderr
	if err := python.Run(); err != nil {
		log.Fatal(err)
	}
	n, _, _ := results.Get(ctx, "job 1")
	fmt.Println("job 1:", n)

	m.Close()
	stop()
	<-served
	// Output: job 1: 5
}

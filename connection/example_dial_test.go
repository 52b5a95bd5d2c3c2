//go:build linux

package connection_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
)

// exampleCaller runs in a child: it dials the parent's Listener and asks
// it a question. A nil authkey is the key of the process tree, which the
// child inherits.
var exampleCaller = mp.RegisterProc("example.caller", func(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := connection.Dial(ctx, "unix", addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Send([]int{1, 2, 3}); err != nil {
		return err
	}
	var sum int
	if err := c.Recv(&sum); err != nil {
		return err
	}
	if sum != 6 {
		return fmt.Errorf("sum %d", sum)
	}
	return nil
})

// Dial is Python's Client: a child dials the parent's Listener on an
// abstract unix socket, and they exchange values over the authenticated
// connection. ctx bounds the connection and its handshake.
func ExampleDial() {
	l, err := connection.Listen("unix", "", nil) // a new abstract socket, the tree's key
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	p := mp.NewProcess(exampleCaller, l.Addr().String())
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.Accept(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var nums []int
	if err := c.Recv(&nums); err != nil {
		log.Fatal(err)
	}
	sum := 0
	for _, n := range nums {
		sum += n
	}
	fmt.Println("the child sent", nums)
	if err := c.Send(sum); err != nil {
		log.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("the child checked the sum and exited")
	// Output:
	// the child sent [1 2 3]
	// the child checked the sum and exited
}

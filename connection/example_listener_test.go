//go:build linux

package connection_test

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp/connection"
)

// A Listener and a client authenticate with the authkey and exchange
// messages. A Python program could take either side:
//
//	from multiprocessing.connection import Client
//	with Client(address, authkey=key) as c:
//	    c.send_bytes(b"hello")
//	    print(c.recv_bytes())
func ExampleListen() {
	key := []byte("secret shared with the peers")
	l, err := connection.Listen("unix", "", key) // a new abstract unix socket
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept(context.Background())
		if err != nil {
			log.Print(err)
			return
		}
		defer c.Close()
		msg, err := c.RecvBytes(0)
		if err != nil {
			log.Print(err)
			return
		}
		c.SendBytes(append([]byte("echo: "), msg...))
	}()

	c, err := connection.Dial(context.Background(), "unix", l.Addr().String(), key)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.SendBytes([]byte("hello"))
	reply, err := c.RecvBytes(0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	<-served

	_, err = connection.Dial(context.Background(), "unix", l.Addr().String(), []byte("wrong key"))
	fmt.Println(err)
	// Output:
	// echo: hello
	// mp: authentication failed: digest sent was rejected
}

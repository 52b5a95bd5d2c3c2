//go:build linux

package connection_test

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp/connection"
)

// With WithPickle, Send and Recv exchange values with CPython's
// Connection.send and recv. Here a Go worker takes the place of this
// Python one, which the Listener would serve just the same:
//
//	from multiprocessing.connection import Client
//	with Client(address, authkey=key) as c:
//	    c.send({'id': 7, 'words': ['a', 'b', 'a'], 'tags': {'x'}})
//	    print(c.recv())     # [7, 2]
func ExampleWithPickle() {
	key := []byte("secret shared with the peers")
	l, err := connection.Listen("unix", "", key, connection.WithPickle())
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	go func() {
		c, err := connection.Dial(context.Background(), "unix", l.Addr().String(), key, connection.WithPickle())
		if err != nil {
			log.Print(err)
			return
		}
		defer c.Close()
		// A struct travels as a dict of its exported fields.
		c.Send(struct {
			ID    int            `pickle:"id"`
			Words []string       `pickle:"words"`
			Tags  connection.Set `pickle:"tags"`
		}{7, []string{"a", "b", "a"}, connection.Set{"x"}})
		var reply any
		c.Recv(&reply)
	}()

	c, err := l.Accept(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var job struct {
		ID    int               `pickle:"id"`
		Words []string          `pickle:"words"`
		Tags  map[string]bool   `pickle:"tags"` // a set fills a map[K]bool or map[K]struct{}
		Other map[string]string // absent from the dict: stays nil
	}
	if err := c.Recv(&job); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", job)
	distinct := map[string]bool{}
	for _, w := range job.Words {
		distinct[w] = true
	}
	// A list: Python gets [7, 2].
	if err := c.Send([]any{job.ID, len(distinct)}); err != nil {
		log.Fatal(err)
	}
	// Output:
	// {ID:7 Words:[a b a] Tags:map[x:true] Other:map[]}
}

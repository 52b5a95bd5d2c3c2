//go:build linux

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-mp/mp"
)

// adder serves on c: it reads pairs and sends back their sums until the
// parent closes its end (io.EOF).
var adder = mp.RegisterProc("scenarios.adder", func(c *mp.Conn) error {
	defer c.Close()
	for {
		var pair [2]int
		err := c.Recv(&pair)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.Send(pair[0] + pair[1]); err != nil {
			return err
		}
	}
})

// Adder starts the adder on one end of a duplex pipe, sends it a few pairs
// over the other and prints the sums; closing its end stops the adder:
//
//	1 + 2 = 3
//	...
//	adder exited after EOF
func Adder(ctx context.Context, w io.Writer) error {
	c, childEnd, err := mp.Pipe(true)
	if err != nil {
		return err
	}
	defer c.Close()
	p := mp.NewProcess(adder, childEnd)
	err = p.Start()
	childEnd.Close()
	if err != nil {
		return err
	}
	defer cleanup(p)

	for _, pair := range [][2]int{{1, 2}, {3, 4}, {10, 20}, {100, -58}} {
		if err := c.Send(pair); err != nil {
			return err
		}
		var sum int
		if err := c.Recv(&sum); err != nil {
			return err
		}
		fmt.Fprintf(w, "%d + %d = %d\n", pair[0], pair[1], sum)
	}
	c.Close() // the adder reads io.EOF and returns
	if err := p.Join(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "adder exited after EOF")
	return nil
}

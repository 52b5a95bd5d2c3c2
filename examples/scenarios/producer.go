//go:build linux

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-mp/mp"
)

type produceArgs struct {
	Items []int
	Out   *mp.Conn // the write end of the pipe
}

// produce sends the items, then closes its end of the pipe.
var produce = mp.RegisterProc("scenarios.produce", func(a produceArgs) error {
	defer a.Out.Close()
	for _, it := range a.Items {
		if err := a.Out.Send(it); err != nil {
			return err
		}
	}
	return nil
})

type consumeArgs struct {
	In     *mp.Conn // the read end of the pipe
	Report *mp.Conn // what the consumer tells the parent
}

// consume receives items until io.EOF, reporting each to the parent.
var consume = mp.RegisterProc("scenarios.consume", func(a consumeArgs) error {
	defer a.Report.Close()
	defer a.In.Close()
	n := 0
	for {
		var item int
		err := a.In.Recv(&item)
		if errors.Is(err, io.EOF) {
			return a.Report.Send(fmt.Sprintf("consumer reached EOF after %d items", n))
		}
		if err != nil {
			return err
		}
		n++
		if err := a.Report.Send(fmt.Sprintf("consumer got %d", item)); err != nil {
			return err
		}
	}
})

// ProducerConsumer runs a producer child and a consumer child on a one-way
// pipe. The consumer sees io.EOF only once every copy of the write end is
// closed: the producer's (closed when it is done) and the parent's, which
// the parent got from mp.Pipe and handed over with Start. A child only
// holds the ends passed to it; the parent must close its own copies of the
// ends it does not use, normally right after Start. Here the parent keeps
// its copy of the write end open a while to show that the consumer then
// waits forever:
//
//	consumer got 0
//	...
//	consumer got 4
//	producer exited, but the parent still holds a copy of the write end: no EOF yet
//	parent closed its copy of the write end
//	consumer reached EOF after 5 items
func ProducerConsumer(ctx context.Context, w io.Writer) error {
	in, out, err := mp.Pipe(false) // in receives, out sends
	if err != nil {
		return err
	}
	defer out.Close()
	reports, reportOut, err := mp.Pipe(false)
	if err != nil {
		in.Close()
		return err
	}
	defer reports.Close()

	items := []int{0, 1, 2, 3, 4}
	producer := mp.NewProcess(produce, produceArgs{Items: items, Out: out})
	consumer := mp.NewProcess(consume, consumeArgs{In: in, Report: reportOut})
	err = producer.Start()
	if err == nil {
		defer cleanup(producer)
		err = consumer.Start()
	}
	// The parent never uses these ends: close its copies at once.
	in.Close()
	reportOut.Close()
	if err != nil {
		return err
	}
	defer cleanup(consumer)

	for range items {
		var line string
		if err := reports.Recv(&line); err != nil {
			return fmt.Errorf("consumer report: %w", err)
		}
		fmt.Fprintln(w, line)
	}
	if err := producer.Join(ctx); err != nil {
		return err
	}
	// The producer's copy of the write end is gone, the parent's is not:
	// the consumer is still waiting for an item, so it reports nothing.
	if ready, err := reports.Poll(100 * time.Millisecond); err != nil || ready {
		return fmt.Errorf("consumer reported before the last write end was closed (ready %v, %v)", ready, err)
	}
	fmt.Fprintln(w, "producer exited, but the parent still holds a copy of the write end: no EOF yet")
	out.Close()
	fmt.Fprintln(w, "parent closed its copy of the write end")

	var line string
	if err := reports.Recv(&line); err != nil {
		return fmt.Errorf("consumer report: %w", err)
	}
	fmt.Fprintln(w, line)
	return consumer.Join(ctx)
}

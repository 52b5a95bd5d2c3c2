//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/go-mp/mp"
)

// Queues travel to children inside their arguments, like the other shared
// objects; their items are copied in and out of shared memory.

type exampleSquarerArgs struct {
	In, Out *mp.Queue[int]
}

// exampleSquarer squares numbers from In onto Out until the sentinel -1,
// which it passes on.
var exampleSquarer = mp.RegisterProc("example.queue.squarer", func(a exampleSquarerArgs) error {
	ctx := context.Background()
	for {
		n, err := a.In.Get(ctx)
		if err != nil {
			return err
		}
		if n < 0 {
			return a.Out.Put(ctx, n)
		}
		if err := a.Out.Put(ctx, n*n); err != nil {
			return err
		}
	}
})

func ExampleQueue() {
	ctx := context.Background()
	in, err := mp.NewQueue[int](0)
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	out, err := mp.NewQueue[int](0)
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()

	p := mp.NewProcess(exampleSquarer, exampleSquarerArgs{In: in, Out: out})
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	for n := 1; n <= 4; n++ {
		in.Put(ctx, n)
	}
	in.Put(ctx, -1) // the sentinel: no more items
	for {
		sq, err := out.Get(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if sq < 0 {
			break
		}
		fmt.Println(sq)
	}
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = in.TryGet()
	fmt.Println("in is empty:", in.Empty(), errors.Is(err, mp.ErrEmpty))
	// Output:
	// 1
	// 4
	// 9
	// 16
	// in is empty: true true
}

type exampleLettersArgs struct {
	Words   *mp.JoinableQueue[string]
	Letters *mp.Value[int64]
}

// exampleLetters counts the letters of the words it takes, marking each
// word done, until the sentinel "".
var exampleLetters = mp.RegisterProc("example.queue.letters", func(a exampleLettersArgs) error {
	ctx := context.Background()
	for {
		word, err := a.Words.Get(ctx)
		if err != nil {
			return err
		}
		if word != "" {
			_, err = a.Letters.Update(ctx, func(n int64) int64 { return n + int64(len(word)) })
		}
		if err := errors.Join(err, a.Words.TaskDone()); err != nil || word == "" {
			return err
		}
	}
})

func ExampleJoinableQueue() {
	ctx := context.Background()
	words, err := mp.NewJoinableQueue[string](0)
	if err != nil {
		log.Fatal(err)
	}
	defer words.Close()
	letters, err := mp.NewValue[int64](0)
	if err != nil {
		log.Fatal(err)
	}
	defer letters.Close()

	p := mp.NewProcess(exampleLetters, exampleLettersArgs{Words: words, Letters: letters})
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	for _, w := range []string{"alpha", "beta", "gamma"} {
		words.Put(ctx, w)
	}
	// Join returns once every word put has been marked done: the worker
	// has counted them all.
	if err := words.Join(ctx); err != nil {
		log.Fatal(err)
	}
	n, _ := letters.Get(ctx)
	fmt.Println("all words done; letters:", n)

	words.Put(ctx, "") // the sentinel: the worker returns
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker exited; queue empty:", words.Empty())
	// Output:
	// all words done; letters: 14
	// worker exited; queue empty: true
}

type exampleWordsArgs struct {
	Words []string
	Out   *mp.SimpleQueue[string]
}

// exampleShout puts its words on the queue in capitals, then "" to say it
// is done.
var exampleShout = mp.RegisterProc("example.queue.shout", func(a exampleWordsArgs) error {
	ctx := context.Background()
	for _, w := range a.Words {
		if err := a.Out.Put(ctx, strings.ToUpper(w)); err != nil {
			return err
		}
	}
	return a.Out.Put(ctx, "")
})

// Python's SimpleQueue: an unbounded queue, with the same Put and Get.
// Items from one producer come out in the order it put them.
func ExampleSimpleQueue() {
	ctx := context.Background()
	q, err := mp.NewSimpleQueue[string]()
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	p := mp.NewProcess(exampleShout, exampleWordsArgs{Words: []string{"one", "two", "three"}, Out: q})
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	for {
		w, err := q.Get(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if w == "" {
			break
		}
		fmt.Println(w)
	}
	if err := p.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("empty:", q.Empty())
	// Output:
	// ONE
	// TWO
	// THREE
	// empty: true
}

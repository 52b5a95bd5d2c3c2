//go:build linux

package manager_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"sync"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/manager"
)

type greetArgs struct {
	Seen *manager.Dict[string, int]
	Name string
}

// greet runs in a child: it writes into the dict it received.
var greet = mp.RegisterProc("manager_test.greet", func(a greetArgs) error {
	return a.Seen.Set(context.Background(), a.Name, len(a.Name))
})

// A manager started with Start serves a Dict to the children, which get
// its proxy as an argument.
func Example() {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	seen, err := manager.NewDict[string, int](ctx, m)
	if err != nil {
		log.Fatal(err)
	}
	var procs []*mp.Process
	for _, name := range []string{"ann", "bob", "carla"} {
		p := mp.NewProcess(greet, greetArgs{Seen: seen, Name: name})
		if err := p.Start(); err != nil {
			log.Fatal(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.Join(ctx); err != nil {
			log.Fatal(err)
		}
	}
	keys, _ := seen.Keys(ctx)
	slices.Sort(keys)
	for _, k := range keys {
		n, _, _ := seen.Get(ctx, k)
		fmt.Println(k, n)
	}
	// Output:
	// ann 3
	// bob 3
	// carla 5
}

// A List can hold proxies of other objects, as in Python: reading it gives
// working proxies.
func ExampleList_nested() {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	rows, _ := manager.NewList[*manager.Dict[string, int]](ctx, m, nil)
	for i := range 2 {
		row, _ := manager.NewDict[string, int](ctx, m)
		row.Set(ctx, "row", i)
		rows.Append(ctx, row)
	}
	second, err := rows.Get(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	second.Set(ctx, "seen", 1)
	all, _ := rows.All(ctx)
	for _, row := range all {
		items, _ := row.Items(ctx)
		fmt.Println(items)
	}
	// Output:
	// [row: 0]
	// [row: 1 seen: 1]
}

// A Lock and a Value of a manager, used from many goroutines (or
// processes): every increment is kept.
func ExampleLock() {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	total, _ := manager.NewValue(ctx, m, 0)
	lock, _ := manager.NewLock(ctx, m)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				lock.Acquire(ctx)
				n, _ := total.Get(ctx)
				total.Set(ctx, n+1)
				lock.Release(ctx)
			}
		}()
	}
	wg.Wait()
	n, _ := total.Get(ctx)
	fmt.Println("total:", n)
	// Output: total: 100
}

// A Queue of a manager: getters wait in the server until an item comes.
func ExampleQueue() {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	q, _ := manager.NewQueue[string](ctx, m, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2 {
			s, err := q.Get(ctx)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println("got", s)
		}
	}()
	q.Put(ctx, "first")
	q.Put(ctx, "second")
	<-done
	_, err = q.TryGet(ctx)
	fmt.Println(err)
	// Output:
	// got first
	// got second
	// mp: queue is empty
}

// A Namespace holds fields of any type, decoded into the caller's.
func ExampleNamespace() {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ns, _ := manager.NewNamespace(ctx, m)
	ns.Set(ctx, "x", 10)
	ns.Set(ctx, "label", "ten")
	var x int
	ns.Get(ctx, "x", &x)
	label, _ := manager.Field[string](ctx, ns, "label")
	fields, _ := ns.Fields(ctx)
	fmt.Println(x, label, fields)
	// Output: 10 ten [label x]
}

// account is a type of the program's own, served by the manager.
type account struct {
	mu      sync.Mutex
	balance int
}

func (a *account) Deposit(n int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.balance += n
	return a.balance
}

func (a *account) Withdraw(n int) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n > a.balance {
		return a.balance, fmt.Errorf("insufficient funds: %d < %d", a.balance, n)
	}
	a.balance -= n
	return a.balance, nil
}

// accounts registers the type at package level, so that the manager's
// process (this binary, re-executed) knows it too.
var accounts = manager.RegisterType("example.account", func(opening int) (*account, error) {
	return &account{balance: opening}, nil
})

// Registered types are made on the server and called through a Proxy, as
// with Python's BaseManager.register.
func ExampleRegisterType() {
	ctx := context.Background()
	m, err := manager.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	acct, err := accounts.New(ctx, m, 100)
	if err != nil {
		log.Fatal(err)
	}
	balance, _ := manager.Call[int](ctx, acct, "Deposit", 50)
	fmt.Println("balance:", balance)
	_, err = manager.Call[int](ctx, acct, "Withdraw", 500)
	fmt.Println(err.(*mp.RemoteError).Message)
	// Output:
	// balance: 150
	// insufficient funds: 150 < 500
}

// Programs that did not start a manager connect to it by address and key,
// and meet at named objects. Here the server runs in this process, on TCP.
func ExampleConnect() {
	ctx, stop := context.WithCancel(context.Background())
	key := []byte("a key both programs know")
	l, err := connection.Listen("tcp", "127.0.0.1:0", key)
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- manager.Serve(ctx, l) }()

	// A producer program...
	producer, err := manager.Connect(ctx, "tcp", l.Addr().String(), key)
	if err != nil {
		log.Fatal(err)
	}
	jobs, _ := manager.NewQueue[string](ctx, producer, 0, manager.Named("jobs"))
	jobs.Put(ctx, "job 1")
	producer.Close()

	// ...and a consumer program.
	consumer, err := manager.Connect(ctx, "tcp", l.Addr().String(), key)
	if err != nil {
		log.Fatal(err)
	}
	queue, _ := manager.NewQueue[string](ctx, consumer, 0, manager.Named("jobs"))
	job, _ := queue.Get(ctx)
	fmt.Println(job)
	consumer.Close()

	stop()
	if err := <-served; err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	// Output: job 1
}

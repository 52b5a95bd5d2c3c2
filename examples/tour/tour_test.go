//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/examples/scenarios"
)

// want holds, per scenario, the lines it must print: each a regular
// expression matched against the whole line.
var want = map[string][]string{
	"processes": delayed,
	"runner":    delayed,
	"globals": {
		`a child adds 5 to its copy: counter = 15`,
		`a child adds 10 to its copy: counter = 20`,
		`parent: counter = 10`,
	},
	"producer": {
		`consumer got 0`,
		`consumer got 1`,
		`consumer got 2`,
		`consumer got 3`,
		`consumer got 4`,
		`producer exited, but the parent still holds a copy of the write end: no EOF yet`,
		`parent closed its copy of the write end`,
		`consumer reached EOF after 5 items`,
	},
	"adder": {
		`1 \+ 2 = 3`,
		`3 \+ 4 = 7`,
		`10 \+ 20 = 30`,
		`100 \+ -58 = 42`,
		`adder exited after EOF`,
	},
	"barrier": {
		`process 0 passed the barrier`,
		`process 1 passed the barrier`,
		`process 2 passed the barrier`,
		`process 3 passed the barrier`,
		`process 4 passed the barrier`,
		`process 5 passed the barrier`,
		`process 6 passed the barrier`,
		`process 7 passed the barrier`,
		`process 8 passed the barrier`,
		`process 9 passed the barrier`,
		`arrival indices, sorted: \[0 0 1 1 2 2 3 3 4 4\]`,
		`the action ran 2 times`,
	},
	"lockpids": {
		`worker [0-3] \(pid [1-9][0-9]*\) enters the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) leaves the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) enters the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) leaves the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) enters the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) leaves the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) enters the critical section`,
		`worker [0-3] \(pid [1-9][0-9]*\) leaves the critical section`,
		`4 critical sections, one at a time: never more than 1 process inside`,
	},
	"event": {
		`waiter 0 waits for the event`,
		`waiter 1 waits for the event`,
		`waiter 2 waits for the event`,
		`no waiter woke in 50ms: the event is not set`,
		`parent sets the event`,
		`waiter 0 woke up: event set = true`,
		`waiter 1 woke up: event set = true`,
		`waiter 2 woke up: event set = true`,
	},
	"counter": {
		`one process adds 1 10000 times, another adds -1 10000 times, at the same time`,
		`final value: 0`,
	},
	"floatchannel": {
		`sent 1000 messages`,
		`the receiver got 1000 messages, 4991500 floats, none damaged`,
		`checksum 2509161988\.28125 \(as sent\)`,
	},
	"sentinel": {
		`consumer got 1, squared 1`,
		`consumer got 2, squared 4`,
		`consumer got 3, squared 9`,
		`consumer got 4, squared 16`,
		`consumer got 5, squared 25`,
		`consumer got the sentinel after 5 items`,
		`producer and consumer exited`,
	},
	"joinable": {
		`put 10 items`,
		`Join returned: every item was marked done`,
		`sum of the squares, from the consumer: 385`,
		`the daemon consumer still waits for items: terminate it`,
		`consumer exit code -15`,
	},
	"tenconsumers": {
		`put 100 items; Join returned: all were marked done`,
		`each of the items 0\.\.99 was processed exactly once: sum 4950`,
		`10 consumers stopped at their sentinel`,
	},
	"balance": {
		`the producer put 30 items into a queue of maxsize 3`,
		`Qsize after each Put: at most [1-3], never above maxsize`,
		`the producer found the queue full [1-9][0-9]* times and waited for room`,
		`2 slow consumers took 30 items, sum 435`,
	},
	"apply": {
		`square\(10\) = 100, computed by PoolWorker-[12] \(pid [1-9][0-9]*\)`,
		`apply waits for each result: 0 1 4 9 16`,
		`no call ran in the parent: true`,
	},
	"applyasync": {
		`submitted 10 calls without waiting`,
		`after Close, new work is refused: mp: pool is closed`,
		`after Join, every worker has exited: 10 of 10 results ready`,
		`\[0 1 4 9 16 25 36 49 64 81\]`,
	},
	"callback": {
		`parent pid [1-9][0-9]*`,
		`callbacks collected 10 results: \[0 1 4 9 16 25 36 49 64 81\]`,
		`every task ran in a worker, not in the parent: true`,
		`every callback ran in the parent: true`,
		`the error callback got: mp: error in process PoolWorker-[0-9]+ \(pid [1-9][0-9]*\): negative -1`,
	},
	"imap": {
		`imap:           0 1 4 9 16 25 36 49`,
		`imap_unordered:( (0|1|4|9|16|25|36|49)){8}`,
		`imap_unordered gave the same results in another order: true`,
	},
	"initializer": {
		`a pool of 2 workers, each replaced after 3 tasks`,
		`every task saw the initializer's greeting "hello": true`,
		`9 tasks ran in [3-9] worker processes, none ran more than 3: true`,
		`more worker processes than the pool's 2: true`,
	},
	"poolvsprocs": {
		`a pool of 4 workers: 100 tasks in ` + duration,
		`100 processes, one per task: 100 tasks in ` + duration,
		`the pool was [0-9]+\.[0-9] times as fast`,
		`same results: true`,
	},
	"digest": {
		`hashed 50 files in chunks of 20`,
		`a/file-00\.txt  621e5754b33223fc\.\.\.`,
		`a/file-01\.txt  ba8ee422730d25df\.\.\.`,
		`\.\.\.`,
		`b/c/file-48\.txt  360b4b34fa63aafe\.\.\.`,
		`b/c/file-49\.txt  8f010497895d27be\.\.\.`,
		`SHA-512 of the sorted list: 992af836573f9755\.\.\.`,
	},
	"executor": {
		`submit: square\(7\) = 49`,
		`a failed call: mp: error in process PoolWorker-[0-9]+ \(pid [1-9][0-9]*\): negative -1`,
		`map: 1 4 9 16 25 36 49 64`,
		`as completed: 5 futures, results 0 1 4 9 16`,
		`done callbacks ran for 5 futures`,
		`shutdown: every future done: true`,
		`submit after shutdown: mp: cannot schedule new futures after shutdown`,
	},
	"managerdict": {
		`a manager process serves a Dict and a List to 10 workers`,
		`the dict has 10 keys: worker-0 worker-1 worker-2 worker-3 worker-4 worker-5 worker-6 worker-7 worker-8 worker-9`,
		`the list has 10 pids, in the order the workers wrote them`,
		`each worker's pid is under its name and once in the list: true`,
	},
	"managervalue": {
		`a manager holds a Value of 0`,
		`a child adds 5 to it`,
		`a child adds 10 to it`,
		`parent: value = 15`,
	},
	"managerlock": {
		`one process adds 1 5000 times, another adds -1 5000 times, under a manager Lock`,
		`final value: 0`,
	},
	"managerremote": {
		`a manager serves on tcp 127\.0\.0\.1, with an authkey of its own`,
		`another process connected with the address and the key, and put 3 jobs`,
		`got "resize photo-1\.jpg"`,
		`got "resize photo-2\.jpg"`,
		`got "resize photo-3\.jpg"`,
		`a client with a wrong key is refused: true`,
	},
}

// duration matches a time.Duration as printed: 9ms, 1.234s, 1m2.5s.
const duration = `[0-9][0-9.hm]*s`

var delayed = []string{
	`fast \(pid [1-9][0-9]*\) done after 50ms`,
	`slow \(pid [1-9][0-9]*\) done after 150ms`,
	`joined fast and slow`,
}

// build builds the tour and every example command into a temporary
// directory.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the examples: %v", err)
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, append(args, "../...")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	return dir
}

// run runs a built command with a time limit and returns its standard
// output; anything on standard error fails the test.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // children hold the output pipes too
	err := cmd.Run()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}

// sections splits the tour's output at its headings.
func sections(t *testing.T, out string) (names []string, body map[string][]string) {
	t.Helper()
	heading := regexp.MustCompile(`^== ([a-z]+): .+ ==$`)
	body = map[string][]string{}
	cur := ""
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if m := heading.FindStringSubmatch(line); m != nil {
			cur = m[1]
			if _, dup := body[cur]; dup {
				t.Errorf("scenario %s ran twice", cur)
			}
			names = append(names, cur)
			body[cur] = nil
			continue
		}
		if cur == "" {
			t.Fatalf("output before the first heading: %q", line)
		}
		body[cur] = append(body[cur], line)
	}
	return names, body
}

// check compares lines with the expectations of scenario name; a blank
// line may end a section.
func check(t *testing.T, name string, lines []string) {
	t.Helper()
	exp, ok := want[name]
	if !ok {
		t.Errorf("scenario %s has no expected output in tour_test.go", name)
		return
	}
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	for i := range max(len(exp), len(lines)) {
		switch {
		case i >= len(lines):
			t.Errorf("%s: line %d missing, want %q", name, i+1, exp[i])
		case i >= len(exp):
			t.Errorf("%s: unexpected line %d: %q", name, i+1, lines[i])
		case !regexp.MustCompile(`^(?:` + exp[i] + `)$`).MatchString(lines[i]):
			t.Errorf("%s: line %d = %q, want %q", name, i+1, lines[i], exp[i])
		}
	}
}

func TestTour(t *testing.T) {
	dir := build(t)
	out := run(t, filepath.Join(dir, "tour"))
	t.Logf("tour output:\n%s", out)

	names, body := sections(t, out)
	var all []string
	for _, s := range scenarios.All {
		all = append(all, s.Name)
	}
	if fmt.Sprint(names) != fmt.Sprint(all) {
		t.Errorf("tour ran %v, want %v", names, all)
	}
	for _, name := range names {
		check(t, name, body[name])
	}
	for name := range want {
		if _, ok := body[name]; !ok {
			t.Errorf("scenario %s expected but not in the tour", name)
		}
	}

	// Each scenario has a command of its own that prints the same.
	for _, s := range scenarios.All {
		t.Run(s.Name, func(t *testing.T) {
			out := run(t, filepath.Join(dir, s.Name))
			check(t, s.Name, strings.Split(strings.TrimSuffix(out, "\n"), "\n"))
		})
	}

	t.Run("selection", func(t *testing.T) {
		out := run(t, filepath.Join(dir, "tour"), "adder", "globals")
		names, body := sections(t, out)
		if fmt.Sprint(names) != "[globals adder]" {
			t.Errorf("tour adder globals ran %v, want [globals adder]", names)
		}
		for _, name := range names {
			check(t, name, body[name])
		}
		out2, err := exec.Command(filepath.Join(dir, "tour"), "nosuch").CombinedOutput()
		if err == nil || !strings.Contains(string(out2), `no scenario "nosuch"`) {
			t.Errorf("tour nosuch: %v, %s", err, out2)
		}
	})
}

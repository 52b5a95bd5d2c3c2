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
}

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

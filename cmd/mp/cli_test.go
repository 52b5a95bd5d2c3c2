//go:build linux

package main

import (
	"bytes"
	"context"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// flagsText returns what PrintDefaults prints for each command's flags:
// bench, then each manager subcommand.
func flagsText() map[string]string {
	texts := map[string]string{}
	var b bytes.Buffer
	printFlags(&b, newBenchFlags().fs)
	texts["bench"] = b.String()
	for _, cmd := range managerCommands {
		b.Reset()
		printFlags(&b, newManagerFlags(cmd).fs)
		texts["manager "+cmd] = b.String()
	}
	for _, cmd := range clusterCommands {
		b.Reset()
		printFlags(&b, newClusterFlags(cmd).fs)
		texts["cluster "+cmd] = b.String()
	}
	return texts
}

// TestHelp asks for help every way there is: each prints to stdout, exits
// 0, and shows every flag of what it covers with its default, as
// PrintDefaults prints them.
func TestHelp(t *testing.T) {
	flags := flagsText()
	all := []string{"bench", "manager serve", "manager put", "manager get", "manager stats", "cluster serve", "cluster status", "cluster token"}
	manager, cluster := all[1:5], all[5:]
	type helpCase struct {
		args   []string
		covers []string // whose flags it shows
		want   string
	}
	cases := []helpCase{
		{[]string{"-h"}, all, "mp version"},
		{[]string{"-help"}, all, "mp version"},
		{[]string{"--help"}, all, "mp version"},
		{[]string{"help"}, all, "mp help [command]"},
		{[]string{"help", "help"}, all, "mp help [command]"},
		{[]string{"help", "bench"}, all[:1], "workloads: "},
		{[]string{"bench", "-h"}, all[:1], "workloads: "},
		{[]string{"bench", "-help"}, all[:1], "workloads: "},
		{[]string{"help", "manager"}, manager, "MP_AUTHKEY"},
		{[]string{"manager", "-h"}, manager, "MP_AUTHKEY"},
		{[]string{"manager", "help"}, manager, "MP_AUTHKEY"},
		{[]string{"help", "cluster"}, cluster, "MP_AUTHKEY"},
		{[]string{"cluster", "-h"}, cluster, "-cluster-listen"},
		{[]string{"cluster", "help"}, cluster, "nats-route://"},
		{[]string{"help", "version"}, nil, "usage: mp version"},
		{[]string{"version", "-h"}, nil, "usage: mp version"},
	}
	for _, cmd := range managerCommands {
		want, covers := "usage: mp manager "+cmd, []string{"manager " + cmd}
		cases = append(cases,
			helpCase{[]string{"help", "manager", cmd}, covers, want},
			helpCase{[]string{"manager", cmd, "-h"}, covers, want},
			helpCase{[]string{"manager", "help", cmd}, covers, want})
	}
	for _, cmd := range clusterCommands {
		want, covers := "usage: mp cluster "+cmd, []string{"cluster " + cmd}
		cases = append(cases,
			helpCase{[]string{"help", "cluster", cmd}, covers, want},
			helpCase{[]string{"cluster", cmd, "-h"}, covers, want},
			helpCase{[]string{"cluster", "help", cmd}, covers, want})
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Errorf("mp %s: exit %d, stderr %q", strings.Join(c.args, " "), code, errb.String())
			continue
		}
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("mp %s: no %q in:\n%s", strings.Join(c.args, " "), c.want, out.String())
		}
		for _, name := range c.covers {
			if !strings.Contains(out.String(), flags[name]) {
				t.Errorf("mp %s: the flags of mp %s are missing from:\n%s", strings.Join(c.args, " "), name, out.String())
			}
		}
	}
}

// TestUsageErrors gives wrong commands and flags: usage goes to stderr
// and the status is 2.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nosuch"}, {"help", "nosuch"}, {"help", "manager", "nosuch"}, {"help", "bench", "x"},
		{"version", "x"}, {"bench", "-nosuchflag"}, {"manager", "nosuch"}, {"manager", "get", "-x"},
		{"cluster"}, {"cluster", "nosuch"}, {"help", "cluster", "nosuch"}, {"cluster", "serve", "-x"},
		{"cluster", "serve", "extra"}, {"cluster", "status"}, {"cluster", "serve", "-routes", "127.0.0.1:1"},
		{"cluster", "serve", "-listen", "nohostport"}, {"cluster", "serve", "-listen", ":4222"},
		{"cluster", "serve", "-cluster-listen", "127.0.0.1:1"}, {"cluster", "serve", "-tls-cert", "x"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || errb.Len() == 0 || out.Len() != 0 {
			t.Errorf("mp %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
}

// TestModuleVersion gives moduleVersion the build information of each
// kind of build.
func TestModuleVersion(t *testing.T) {
	main := func(path, v string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: path, Version: v}}
	}
	ws := main("example.com/work", "(devel)")
	ws.Deps = []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.1.0"}, {Path: modulePath, Version: "v1.4.0"}}
	replaced := main("example.com/work", "")
	replaced.Deps = []*debug.Module{{Path: modulePath, Version: "v1.4.0", Replace: &debug.Module{Path: "../mp", Version: ""}}}
	for _, c := range []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "(devel)"},
		{main(modulePath, "v1.2.3"), true, "v1.2.3"},
		{main(modulePath, "(devel)"), true, "(devel)"},
		{main(modulePath, ""), true, "(devel)"},
		{ws, true, "v1.4.0"},
		{replaced, true, "(devel)"},
		{main("example.com/other", "v9.9.9"), true, "(devel)"},
	} {
		if got := moduleVersion(c.info, c.ok); got != c.want {
			t.Errorf("moduleVersion(%+v) = %q, want %q", c.info, got, c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || out.String() != "mp "+moduleVersion(debug.ReadBuildInfo())+"\n" {
		t.Errorf("mp version: exit %d, %q, stderr %q", code, out.String(), errb.String())
	}
}

// TestHelpBinary runs the built command: help goes to stdout with status
// 0, and version prints the module version.
func TestHelpBinary(t *testing.T) {
	bin := buildMP(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "-handshake-timeout duration"},
		{[]string{"help", "bench"}, "(default 1)"},
		{[]string{"bench", "-h"}, "-scale float"},
		{[]string{"manager", "get", "-h"}, "number of items to get (default 1)"},
		{[]string{"help", "manager", "serve"}, "(default 10s)"},
		{[]string{"version"}, "mp "},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, c.args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		cancel()
		if err != nil || errb.Len() != 0 || !strings.Contains(out.String(), c.want) {
			t.Errorf("mp %s: %v, stdout %q, stderr %q; want status 0 and %q on stdout", strings.Join(c.args, " "), err, out.String(), errb.String(), c.want)
		}
		if c.args[0] == "version" && !regexp.MustCompile(`^mp (\(devel\)|v\S+)\n$`).MatchString(out.String()) {
			t.Errorf("mp version = %q", out.String())
		}
	}
}

// TestPackageDoc checks that the package doc names every subcommand and
// every flag, and that every file it names is in the module.
func TestPackageDoc(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	for _, want := range []string{"mp bench", "mp manager serve", "mp manager put", "mp manager get", "mp manager stats",
		"mp cluster serve", "mp cluster status", "mp cluster token", "mp help", "mp version"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the package doc does not mention %q", want)
		}
	}
	for cmd, text := range flagsText() {
		for _, m := range regexp.MustCompile(`(?m)^  (-\S+)`).FindAllStringSubmatch(text, -1) {
			if !regexp.MustCompile(regexp.QuoteMeta(m[1]) + `\b`).MatchString(doc) {
				t.Errorf("the package doc does not mention %s of mp %s", m[1], cmd)
			}
		}
	}
	for _, name := range regexp.MustCompile(`[\w./-]+\.(?:py|md|go|txt)\b`).FindAllString(doc, -1) {
		if _, err := os.Stat(filepath.Join("..", "..", name)); err != nil {
			t.Errorf("the package doc names %s, which is not in the module", name)
		}
	}
	if strings.Contains(doc, "DESIGN") || strings.Contains(doc, "§") {
		t.Errorf("the package doc refers to a design document outside the module:\n%s", doc)
	}
}

// Several workloads run one after the other, each in a process of its
// own, and every result reaches stdout.
func TestBenchSeveralWorkloads(t *testing.T) {
	bin := buildMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "bench", "-json", "-scale", "0.01", "sem_pingpong", "pipe_rtt")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("mp bench: %v, stderr %q", err, errb.String())
	}
	for _, name := range []string{`"name":"sem_pingpong"`, `"name":"pipe_rtt"`} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("no %s in %q", name, out.String())
		}
	}
}

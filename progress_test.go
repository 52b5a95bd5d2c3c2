//go:build linux

package mp_test

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var sleepDouble = mp.Register("test.progress.sleepDouble", func(ms int) (int, error) {
	if ms < 0 {
		return 0, errors.New("negative sleep")
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return 2 * ms, nil
})

type progressCall struct{ done, total int }

func TestProgressHookMap(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	items := make([]int, 100)
	// No lock: the calls are documented to come one at a time, which the
	// race detector checks.
	var calls []progressCall
	got, err := double.Map(ctx, pool, items, 10, mp.WithProgress(func(done, total int) {
		calls = append(calls, progressCall{done, total})
	}))
	if err != nil || len(got) != 100 {
		t.Fatal(err)
	}
	if len(calls) != 10 {
		t.Fatalf("%d progress calls for 10 chunks: %v", len(calls), calls)
	}
	for i, c := range calls {
		if c != (progressCall{10 * (i + 1), 100}) {
			t.Fatalf("progress call %d = %+v", i, c)
		}
	}

	// MapAsync: every progress option gets the calls.
	var a, b []int
	res := double.MapAsync(ctx, pool, items, 25, mp.WithProgress(func(done, total int) { a = append(a, done) }),
		mp.WithProgress(func(done, total int) { b = append(b, done) }), nil)
	if _, err := res.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a) != "[25 50 75 100]" || !slices.Equal(a, b) {
		t.Fatalf("MapAsync progress %v and %v", a, b)
	}

	// A failing Map stops reporting short of the total.
	calls = nil
	if _, err := sleepDouble.Map(ctx, pool, []int{0, 0, -1, 0}, 1, mp.WithProgress(func(done, total int) {
		calls = append(calls, progressCall{done, total})
	})); err == nil {
		t.Fatal("failing Map succeeded")
	}
	for _, c := range calls {
		if c.done >= 4 || c.total != 4 {
			t.Fatalf("progress of a failing Map: %v", calls)
		}
	}
}

func TestProgressHookImap(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	for _, ordered := range []bool{true, false} {
		var calls []progressCall
		hook := mp.WithProgress(func(done, total int) { calls = append(calls, progressCall{done, total}) })
		seq := double.ImapUnordered(ctx, pool, seqOf(50), 5, hook)
		if ordered {
			seq = double.Imap(ctx, pool, seqOf(50), 5, hook)
		}
		n := 0
		for _, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			n++
			// Reported when a chunk is done, at the latest when it is yielded.
			if last := calls[len(calls)-1]; last.done < n {
				t.Fatalf("item %d yielded with progress %v", n, last)
			}
		}
		if n != 50 || len(calls) != 10 {
			t.Fatalf("ordered %v: %d items, %d progress calls", ordered, n, len(calls))
		}
		for i, c := range calls {
			if c != (progressCall{5 * (i + 1), -1}) {
				t.Fatalf("ordered %v: progress call %d = %+v", ordered, i, c)
			}
		}
	}
}

func TestProgressBarMap(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	var buf bytes.Buffer
	if _, err := double.Map(ctx, pool, []int{1, 2, 3, 4}, 1, mp.WithProgressBar(&buf)); err != nil {
		t.Fatal(err)
	}
	want := "\rtest.double   0% [                              ] 0/4" +
		"\rtest.double  25% [======>                       ] 1/4" +
		"\rtest.double  50% [==============>               ] 2/4" +
		"\rtest.double  75% [=====================>        ] 3/4" +
		"\rtest.double 100% [==============================] 4/4\n"
	if buf.String() != want {
		t.Fatalf("progress bar:\n%q\nwant\n%q", buf.String(), want)
	}

	// A longer Map draws at most once per percent.
	buf.Reset()
	items := make([]int, 1000)
	if _, err := double.Map(ctx, pool, items, 1, mp.WithProgressBar(&buf)); err != nil {
		t.Fatal(err)
	}
	frames := checkFrames(t, buf.String(), `test\.double +\d+% \[[=> ]{30}\] \d+/1000`)
	if len(frames) > 102 || frames[len(frames)-1] != "test.double 100% [==============================] 1000/1000" {
		t.Fatalf("%d frames, the last %q", len(frames), frames[len(frames)-1])
	}

	// A failing Map ends its bar where it stopped.
	buf.Reset()
	if _, err := sleepDouble.Map(ctx, pool, []int{-1, 50, 50, 50}, 1, mp.WithProgressBar(&buf)); err == nil {
		t.Fatal("failing Map succeeded")
	}
	frames = checkFrames(t, buf.String(), `test\.progress\.sleepDouble +\d+% \[[=> ]{30}\] \d/4`)
	if last := frames[len(frames)-1]; strings.Contains(last, "100%") {
		t.Fatalf("bar of a failing Map ends with %q", last)
	}
}

func TestProgressBarImap(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	var buf bytes.Buffer
	n := 0
	for _, err := range double.Imap(ctx, pool, seqOf(300), 3, mp.WithProgressBar(&buf)) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	frames := checkFrames(t, buf.String(), `test\.double \d+ done`)
	if n != 300 || frames[0] != "test.double 0 done" || frames[len(frames)-1] != "test.double 300 done" {
		t.Fatalf("%d items, frames %q", n, frames)
	}
	// Stopping early ends the bar too.
	buf.Reset()
	for range double.ImapUnordered(ctx, pool, seqOf(300), 3, mp.WithProgressBar(&buf)) {
		break
	}
	checkFrames(t, buf.String(), `test\.double \d+ done`)
}

// checkFrames checks that out is a bar's output, frames each drawn after a
// carriage return and matching frame, then a newline, and returns the
// frames.
func checkFrames(t *testing.T, out, frame string) []string {
	t.Helper()
	if !strings.HasPrefix(out, "\r") || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("bar output %q", out)
	}
	frames := strings.Split(strings.TrimSuffix(out[1:], "\n"), "\r")
	re := regexp.MustCompile(`^` + frame + `$`)
	for _, f := range frames {
		if !re.MatchString(f) {
			t.Fatalf("bad frame %q in %q", f, out)
		}
	}
	return frames
}

func TestPoolStats(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2})
	ctx := ctxTimeout(t, 30*time.Second)
	before := pool.Stats()
	if len(before) != 2 {
		t.Fatalf("%d workers", len(before))
	}
	for _, s := range before {
		if s.Tasks != 0 || s.Busy != 0 || s.Pid <= 0 || !strings.HasPrefix(s.Name, "PoolWorker-") {
			t.Fatalf("new worker %+v", s)
		}
	}
	items := make([]int, 20)
	for i := range items {
		items[i] = 10
	}
	start := time.Now()
	if _, err := sleepDouble.Map(ctx, pool, items, 1); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	time.Sleep(30 * time.Millisecond) // idle time
	after := pool.Stats()
	tasks := 0
	for _, s := range after {
		tasks += s.Tasks
		if s.Busy < time.Duration(s.Tasks)*10*time.Millisecond {
			t.Errorf("worker %s ran %d tasks of 10ms in %v", s.Name, s.Tasks, s.Busy)
		}
		if s.Busy > elapsed {
			t.Errorf("worker %s busy %v in a Map of %v", s.Name, s.Busy, elapsed)
		}
		if s.Idle < 30*time.Millisecond {
			t.Errorf("worker %s idle only %v", s.Name, s.Idle)
		}
	}
	if tasks != 20 {
		t.Fatalf("workers ran %d tasks in all, want 20: %+v", tasks, after)
	}
	if after[0].Pid == after[1].Pid {
		t.Fatalf("two workers with pid %d", after[0].Pid)
	}
}

// A worker that leaves after MaxTasksPerChild tasks must not take more
// than that: those it was given beyond used to fail with a
// WorkerLostError. (Few tasks: a race-enabled worker takes a second to
// exit.)
func TestPoolMapMaxTasksPerChild(t *testing.T) {
	pool := newPool(t, mp.PoolOptions{Processes: 2, MaxTasksPerChild: 3})
	ctx := ctxTimeout(t, 60*time.Second)
	items := make([]int, 12)
	for i := range items {
		items[i] = i
	}
	got, err := double.Map(ctx, pool, items, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 2*i {
			t.Fatalf("result %d = %d", i, v)
		}
	}
}

// Terminate while workers are being replaced: the replacements must not
// outlive the pool (Join used to wait for them forever).
func TestPoolTerminateWhileReplacing(t *testing.T) {
	for range 5 {
		pool, err := mp.NewPool(mp.PoolOptions{Processes: 2, MaxTasksPerChild: 1})
		if err != nil {
			t.Fatal(err)
		}
		res := double.MapAsync(ctxTimeout(t, 30*time.Second), pool, make([]int, 200), 1)
		time.Sleep(20 * time.Millisecond)
		pool.Terminate()
		if err := pool.Join(ctxTimeout(t, 20*time.Second)); err != nil {
			t.Fatalf("Join after Terminate: %v", err)
		}
		if _, err := res.Get(ctxTimeout(t, 5*time.Second)); !errors.Is(err, mp.ErrPoolTerminated) {
			t.Fatalf("Map of a terminated pool = %v", err)
		}
	}
}

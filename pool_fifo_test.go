//go:build linux

package mp

import (
	"testing"
)

// A queue of tasks given to and taken from at once, thousands long (the
// pool's queue in a burst of ApplyAsync, a worker's pending), keeps the
// array it grew to: once as large as it gets, it takes no new memory,
// where append alone took a new array, fresh memory faulted in a page
// at a time, each time the queue slid to the end of its array.
func TestAppendFIFOKeepsItsArray(t *testing.T) {
	var q, arr []*task
	tasks := make([]*task, 3000)
	for i := range tasks {
		tasks[i] = &task{id: uint64(i)}
	}
	q = appendFIFO(q, &arr, tasks[:1000]...) // a queue 1000 long
	next := 1000
	step := func() {
		// Take one from the front, as popTask does, and give one.
		q[0] = nil
		q = q[1:]
		q = appendFIFO(q, &arr, tasks[next%len(tasks)])
		next++
	}
	for range 5000 { // grown to its largest
		step()
	}
	steps := func() {
		for range 5000 {
			step()
		}
	}
	if allocs := testing.AllocsPerRun(4, steps); allocs != 0 {
		t.Fatalf("%v allocations per 5000 tasks given and taken, want 0", allocs)
	}
	// Order kept throughout, and nothing lost.
	if len(q) != 1000 {
		t.Fatalf("queue of %d tasks, want 1000", len(q))
	}
	for i, tk := range q {
		if want := tasks[(next-1000+i)%len(tasks)]; tk != want {
			t.Fatalf("q[%d] is task %d, want %d", i, tk.id, want.id)
		}
	}
}

// When appendFIFO moves a queue back to the start of its array, the slots
// after it are cleared: the array keeps no task the queue no longer has.
func TestAppendFIFOClearsWhatItLeaves(t *testing.T) {
	var q, arr []*task
	for i := range 8 {
		q = appendFIFO(q, &arr, &task{id: uint64(i)})
	}
	a := arr[:cap(arr)]
	if len(a) == 0 {
		t.Fatal("the queue's array was not kept")
	}
	for len(q) > 2 { // popTask's way
		q[0] = nil
		q = q[1:]
	}
	for len(q) < cap(q) {
		q = appendFIFO(q, &arr, &task{id: 100})
	}
	q = appendFIFO(q, &arr, &task{id: 101}) // moves
	if &q[0] != &a[0] {
		t.Fatal("the queue was not moved to the start of its array")
	}
	for i, tk := range a[len(q):] {
		if tk != nil {
			t.Fatalf("slot %d after the queue still holds task %d", len(q)+i, tk.id)
		}
	}
}

// A queue that is not a part of its array reaching the array's end (set
// from elsewhere, as a dead worker's tasks put back in front of the
// queue) is never moved into that array, which may be another's.
func TestAppendFIFOLeavesOtherArrays(t *testing.T) {
	var arr []*task
	q := appendFIFO(nil, &arr, make([]*task, 2)...)
	old := arr[:cap(arr)]
	if len(old) == 0 {
		t.Fatal("the queue's array was not kept")
	}
	other := make([]*task, 1, 1) // full: the next append must move it
	other[0] = &task{id: 7}
	q = appendFIFO(other, &arr, &task{id: 8})
	if &q[0] == &old[0] {
		t.Fatal("a queue of another array was moved into the queue's array")
	}
	if q[0].id != 7 || q[1].id != 8 {
		t.Fatalf("queue %d, %d; want 7, 8", q[0].id, q[1].id)
	}
}

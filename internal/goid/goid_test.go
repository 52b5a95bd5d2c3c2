//go:build linux

package goid

import (
	"sync"
	"testing"
)

func TestDistinctAndStable(t *testing.T) {
	me := Get()
	if me == 0 || Get() != me {
		t.Fatalf("Get = %d then %d", me, Get())
	}
	const n = 50
	ids := make(chan uint64, n)
	var wg sync.WaitGroup
	var hold sync.WaitGroup
	hold.Add(1)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := Get()
			ids <- id
			hold.Wait() // stay alive so that no id is reused
			if Get() != id {
				t.Error("id changed within a goroutine")
			}
		}()
	}
	seen := map[uint64]bool{me: true}
	for i := 0; i < n; i++ {
		id := <-ids
		if seen[id] {
			t.Fatalf("id %d seen twice among live goroutines", id)
		}
		seen[id] = true
	}
	hold.Done()
	wg.Wait()
}

func BenchmarkGet(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Get()
	}
}

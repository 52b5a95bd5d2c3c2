//go:build linux

// Package bench holds the workloads of `mp bench`: the same workloads that
// shared/bench/py_baseline.py measures for CPython, with the same names and
// units, so that the two can be compared line by line.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// Result is one measured figure.
type Result struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// A Workload measures one thing. Scale (0 < scale ≤ 1) shrinks its
// iteration counts, for quick checks.
type Workload struct {
	Name string
	Doc  string
	Run  func(scale float64) ([]Result, error)
	// Growth marks a workload that measures how a cost grows with the
	// size of the work (large items, many clients, many objects). It
	// takes minutes, so `mp bench` runs it only when it is named or with
	// -growth; its CPython side is bench/py_growth.py.
	Growth bool
}

var workloads = map[string]Workload{}

func add(w Workload) { workloads[w.Name] = w }

// Names returns the names of the workloads with Growth equal to growth,
// in a stable order.
func Names(growth bool) []string {
	names := make([]string, 0, len(workloads))
	for n, w := range workloads {
		if w.Growth == growth {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		oi, oj := order(names[i]), order(names[j])
		return oi < oj || oi == oj && names[i] < names[j]
	})
	return names
}

// The order of DESIGN.md's table; unknown names go last.
var designOrder = []string{"spawn", "pipe_rtt", "pipe_bw", "queue_tp", "pool_map", "pool_apply_async",
	"pool_apply_sync", "manager_dict", "value_lock", "manager_value_lock", "sem_pingpong", "barrier",
	"float_channel", "cpu_speedup"}

func order(name string) int {
	for i, n := range designOrder {
		if n == name {
			return i
		}
	}
	return len(designOrder)
}

// Lookup returns the named workload.
func Lookup(name string) (Workload, bool) {
	w, ok := workloads[name]
	return w, ok
}

// Emit writes r as a tab-separated line, or as one JSON object per line.
func Emit(w io.Writer, r Result, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(w, "%s\t%.3f\t%s\n", r.Name, r.Value, r.Unit)
	return err
}

func scaled(n int, scale float64) int {
	m := int(float64(n) * scale)
	if m < 1 {
		m = 1
	}
	return m
}

//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-mp/mp"
)

// byteLen is py_growth's len: the worker does next to nothing, so that
// the cost measured is the Map's own (chunking, encoding, sending).
var byteLen = mp.Register("bench.byteLen", func(b []byte) (int, error) { return len(b), nil })

func init() {
	add(Workload{Name: "map_var", Growth: true, Run: benchMapVar,
		Doc: "Map(len) over []byte items of 1 KiB (100k, 300k, 1M) and 64 KiB (16k), default chunks: µs/item and the parent's peak RSS over the input's size"})
}

// mapVarPoints are map_var's sizes: the 1 KiB items grow by about 3x
// from one point to the next, and the last 1 KiB point and the 64 KiB
// point are 1 GiB of input each.
var mapVarPoints = []struct {
	name      string
	size, num int
}{
	{"map_var_1k_100k", 1 << 10, 100_000},
	{"map_var_1k_300k", 1 << 10, 300_000},
	{"map_var_1k_1m", 1 << 10, 1 << 20},
	{"map_var_64k_16k", 64 << 10, 16 << 10},
}

func benchMapVar(scale float64) ([]Result, error) {
	pool, done, err := newPool(2)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx := context.Background()
	// A warm-up of 32 MiB, as py_growth's, with chunks of the largest
	// size (see mapChunkBytes): the first point should not pay alone
	// for what the first Map of large items costs (the memory that the
	// pool and its workers then take, one fault at a time).
	if _, err := byteLen.Map(ctx, pool, byteItems(32<<10, 1<<10), 0); err != nil {
		return nil, err
	}
	var out []Result
	for _, pt := range mapVarPoints {
		n := scaled(pt.num, scale)
		// Each point starts from a heap holding nothing of the last.
		runtime.GC()
		debug.FreeOSMemory()
		items := byteItems(n, pt.size)
		runtime.GC() // not during the Map: building items started cycles
		if err := resetPeakRSS(); err != nil {
			return nil, err
		}
		t := time.Now()
		rs, err := byteLen.Map(ctx, pool, items, 0)
		dt := time.Since(t)
		if err != nil {
			return nil, err
		}
		if len(rs) != n || rs[n-1] != pt.size {
			return nil, fmt.Errorf("%s: wrong results", pt.name)
		}
		peak, err := peakRSS()
		if err != nil {
			return nil, err
		}
		runtime.KeepAlive(items)
		out = append(out,
			Result{pt.name, dt.Seconds() / float64(n) * 1e6, "us/item"},
			Result{pt.name + "_rss", float64(peak) / float64(n*pt.size), "x input"})
	}
	return out, nil
}

// byteItems returns n items of size bytes, item i filled with byte(i).
func byteItems(n, size int) [][]byte {
	items := make([][]byte, n)
	for i := range items {
		items[i] = bytes.Repeat([]byte{byte(i)}, size)
	}
	return items
}

// resetPeakRSS makes the kernel's peak resident size of this process
// (VmHWM) its current one.
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS returns this process's peak resident size (VmHWM) in bytes.
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := bytes.CutPrefix(s.Bytes(), []byte("VmHWM:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(v, []byte("kB")))), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

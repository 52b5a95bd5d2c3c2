//go:build linux

package mp

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// MapOption configures Map, MapAsync, Imap and ImapUnordered. The options
// are [WithProgress] and [WithProgressBar].
type MapOption interface {
	applyMap(*mapConfig)
}

type mapConfig struct {
	hooks []func(done, total int)
	bars  []io.Writer
}

type mapOptionFunc func(*mapConfig)

func (f mapOptionFunc) applyMap(c *mapConfig) { f(c) }

// WithProgress calls fn in this process each time a chunk of items is
// done, with the number of items done so far and the total: len(items) for
// Map and MapAsync, -1 for Imap and ImapUnordered, which read their items
// lazily and do not know it. The calls come one at a time, with done
// growing; they stop when the call ends, with an error or not, so the last
// one has done == total only if every item succeeded. fn should return
// quickly: Map calls it on the goroutine that delivers results, Imap on
// the goroutine that ranges over it. A panic in fn called by Map or
// MapAsync is recovered and reported (see PoolOptions.CallbackPanic).
func WithProgress(fn func(done, total int)) MapOption {
	return mapOptionFunc(func(c *mapConfig) {
		if fn != nil {
			c.hooks = append(c.hooks, fn)
		}
	})
}

// WithProgressBar draws a progress bar of the call on w, os.Stderr if w is
// nil, as Python programs get from tqdm. The bar is one line, labelled with
// the Func's name, redrawn in place (with a carriage return) as chunks are
// done, and ended with a newline when the call ends:
//
//	test.double  60% [==================>            ] 600/1000
//
// With Imap, which does not know how many items there are, the line counts
// the items done instead. The bar is drawn when its percentage changes (or,
// with Imap, at most ten times a second), and once more at the end.
func WithProgressBar(w io.Writer) MapOption {
	return mapOptionFunc(func(c *mapConfig) {
		if w == nil {
			w = os.Stderr
		}
		c.bars = append(c.bars, w)
	})
}

// progressReport reports the progress of one Map or Imap call to its
// hooks and bars. A nil *progressReport does nothing.
type progressReport struct {
	pool  *Pool // that runs the hooks, if not the caller's goroutine
	hooks []func(done, total int)
	bars  []*progressBar
}

// newProgress returns the progress reporter of a call of the Func named
// name over total items (-1: unknown), or nil if there is nothing to
// report to. pool, if not nil, is the
// pool on whose goroutines the hooks run, which recovers their panics.
func newProgress(pool *Pool, name string, total int, opts []MapOption) *progressReport {
	var c mapConfig
	for _, o := range opts {
		if o != nil {
			o.applyMap(&c)
		}
	}
	if len(c.hooks) == 0 && len(c.bars) == 0 {
		return nil
	}
	p := &progressReport{pool: pool, hooks: c.hooks}
	for _, w := range c.bars {
		p.bars = append(p.bars, newProgressBar(w, name, total))
	}
	return p
}

// report tells that done items (of total, -1 if unknown) are done. Calls
// must not overlap.
func (p *progressReport) report(done, total int) {
	if p == nil {
		return
	}
	for _, h := range p.hooks {
		if p.pool != nil {
			p.pool.runCallback(func() { h(done, total) })
		} else {
			h(done, total)
		}
	}
	for _, b := range p.bars {
		b.set(done)
	}
}

// finish ends the bars. Later reports are ignored by them.
func (p *progressReport) finish() {
	if p == nil {
		return
	}
	for _, b := range p.bars {
		b.finish()
	}
}

// progressBar is a one-line text progress bar. It draws only when asked
// to (no timer, no goroutine), so nothing is written after finish.
//
// A small one written here rather than a library: the well-kept ones
// (github.com/schollz/progressbar/v3, say) bring terminal, colour and
// Unicode packages and net/http with them, which would nearly double the
// size of every program that imports mp for the sake of one line of text.
type progressBar struct {
	mu       sync.Mutex
	w        io.Writer
	name     string
	total    int
	done     int
	lastPct  int
	lastDraw time.Time
	drawn    string
	ended    bool
}

const (
	barWidth        = 30
	barUnknownEvery = 100 * time.Millisecond
)

func newProgressBar(w io.Writer, name string, total int) *progressBar {
	b := &progressBar{w: w, name: name, total: total, lastPct: -1}
	b.mu.Lock()
	b.draw()
	b.mu.Unlock()
	return b
}

func (b *progressBar) set(done int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended || done == b.done {
		return
	}
	b.done = done
	if b.total >= 0 {
		if b.percent() != b.lastPct {
			b.draw()
		}
	} else if time.Since(b.lastDraw) >= barUnknownEvery {
		b.draw()
	}
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.ended = true
	b.draw()
	io.WriteString(b.w, "\n")
}

func (b *progressBar) percent() int {
	if b.total <= 0 {
		return 100
	}
	return min(100*b.done/b.total, 100)
}

// draw writes the current line unless it is the one already shown. Called
// with b.mu held.
func (b *progressBar) draw() {
	var line string
	if b.total < 0 {
		line = fmt.Sprintf("%s %d done", b.name, b.done)
	} else {
		pct := b.percent()
		b.lastPct = pct
		fill := pct * barWidth / 100
		cells := strings.Repeat("=", fill)
		if fill < barWidth {
			if fill > 0 {
				cells = cells[:fill-1] + ">"
			}
			cells += strings.Repeat(" ", barWidth-fill)
		}
		line = fmt.Sprintf("%s %3d%% [%s] %d/%d", b.name, pct, cells, b.done, b.total)
	}
	b.lastDraw = time.Now()
	if line == b.drawn {
		return
	}
	b.drawn = line
	io.WriteString(b.w, "\r"+line)
}

//go:build linux

package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/go-mp/mp/internal/clusterhook"
	"github.com/go-mp/mp/internal/codec"
)

// The one home of the cutting of chunks to the server's messages. A pool
// sizes Map's chunks from MaxTaskBytes, an estimate for most types; Imap,
// ImapUnordered and an Executor's SubmitMap take the chunk size they are
// given. Whatever a chunk's size, Submit measures it encoded, and a chunk
// too large for a message is cut here in parts that fit, sent as tasks of
// their own; their results are joined back into the chunk's, in order.

// cutArg cuts the encoded chunk arg, of the given form, into parts of at
// most room bytes each (raw parts alias arg, CBOR ones are new), and says
// how many items each part holds. When an
// item alone does not fit, it returns no parts but the size of the
// smallest part that holds that item (its encoding with an array's
// head), for the TooLargeError.
func cutArg(arg []byte, form clusterhook.ChunkForm, room int) (parts [][]byte, counts []int, tooBig int, err error) {
	if form.Raw {
		if form.Size <= 0 || len(arg)%form.Size != 0 {
			return nil, nil, len(arg), nil // cannot be cut
		}
		per := room / form.Size
		if per == 0 {
			return nil, nil, form.Size, nil
		}
		for off := 0; off < len(arg); off += per * form.Size {
			end := min(off+per*form.Size, len(arg))
			parts = append(parts, arg[off:end])
			counts = append(counts, (end-off)/form.Size)
		}
		return parts, counts, 0, nil
	}
	items, err := codec.SplitMessage(nil, arg)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w: a chunk to cut: %v", ErrMalformed, err)
	}
	for i := 0; i < len(items); {
		k, size := 0, 0
		for i+k < len(items) && arrayHeadLen(k+1)+size+len(items[i+k]) <= room {
			size += len(items[i+k])
			k++
		}
		if k == 0 {
			return nil, nil, arrayHeadLen(1) + len(items[i]), nil
		}
		part := codec.AppendHead(make([]byte, 0, arrayHeadLen(k)+size), codec.MajorArray, uint64(k))
		for _, it := range items[i : i+k] {
			part = append(part, it...)
		}
		parts = append(parts, part)
		counts = append(counts, k)
		i += k
	}
	return parts, counts, 0, nil
}

// arrayHeadLen is the length of the head of a CBOR array of n items.
func arrayHeadLen(n int) int { return len(codec.AppendHead(nil, codec.MajorArray, uint64(n))) }

// joinResults joins the encoded results of a chunk's parts, of the given
// form, into the chunk's result, checking that each part holds as many
// results as it had items (they come from another process).
func joinResults(results [][]byte, counts []int, form clusterhook.ChunkForm) ([]byte, error) {
	var total, size int
	for _, r := range results {
		size += len(r)
	}
	for _, n := range counts {
		total += n
	}
	if form.Raw {
		out := make([]byte, 0, size)
		for k, r := range results {
			if len(r) != counts[k]*form.Size {
				return nil, fmt.Errorf("%w: a part of %d items gave %d bytes of results", ErrMalformed, counts[k], len(r))
			}
			out = append(out, r...)
		}
		return out, nil
	}
	out := codec.AppendHead(make([]byte, 0, size+binary.MaxVarintLen64), codec.MajorArray, uint64(total))
	var items [][]byte
	for k, r := range results {
		var err error
		if items, err = codec.SplitMessage(items[:0], r); err != nil || len(items) != counts[k] {
			return nil, fmt.Errorf("%w: a part of %d items gave %d results (%v)", ErrMalformed, counts[k], len(items), err)
		}
		_, _, n, _ := codec.Head(r)
		out = append(out, r[n:]...)
	}
	return out, nil
}

// cutChunk is a chunk sent in parts: it settles the chunk once its parts
// are in. Its outcome is the chunk's as if it had not been cut: the
// joined results, or the error of the first part, in order, that failed
// (the first failing item's, as a chunk stops at it), once the parts
// before it succeeded. The parts after a failed one are cancelled: their
// outcome no longer matters. They are cancelled together, in one request
// (see cancelAll): once no other part is left to wait for (the first
// part failed, or those before it are in), that is one purge of the
// parts' job and one cancellation, rather than one of each per part.
type cutChunk struct {
	s      *session
	r      ref // the chunk's place in its job
	parts  []*clusterhook.Task
	counts []int
	form   clusterhook.ChunkForm // of the results

	mu      sync.Mutex
	results [][]byte
	errs    []error
	got     int  // parts in from the first on, all successful
	failed  int  // the first part that failed, or len(parts)
	done    bool // settled
}

// cut sends r's chunk t, whose encoded argument arg (behind a task header
// of headLen bytes) is too large for the server's messages, in parts that
// fit; it fails the chunk with a *TooLargeError if one item alone does
// not fit, or if t is no chunk.
func (s *session) cut(r ref, t *clusterhook.Task, arg []byte, headLen int, limit int64) {
	var argForm, resForm clusterhook.ChunkForm
	ok := t.Chunk && clusterhook.ChunkForms != nil
	if ok {
		argForm, resForm, ok = clusterhook.ChunkForms(t.Target)
	}
	if !ok {
		s.settle(r, nil, &TooLargeError{Size: headLen + len(arg), Limit: limit})
		return
	}
	// A part's header differs from the chunk's in its job and index, two
	// uvarints of at least a byte each.
	room := int(limit) - taskMsgRoom - headLen - 2*(binary.MaxVarintLen64-1)
	if argForm.Raw {
		arg = bytes.Clone(arg) // raw parts alias it, and it is the caller's buffer
	}
	parts, counts, tooBig, err := cutArg(arg, argForm, room)
	switch {
	case err != nil:
		s.settle(r, nil, err)
		return
	case parts == nil:
		s.settle(r, nil, &TooLargeError{Size: headLen + tooBig, Limit: limit})
		return
	}
	c := &cutChunk{s: s, r: r, counts: counts, form: resForm,
		results: make([][]byte, len(parts)), errs: make([]error, len(parts)), failed: len(parts)}
	c.parts = make([]*clusterhook.Task, len(parts))
	for k, p := range parts {
		c.parts[k] = &clusterhook.Task{Target: t.Target, Chunk: true, Arg: p, Timeout: t.Timeout,
			Finish: func(b []byte, err error) { c.finish(k, b, err) }}
	}
	s.mu.Lock()
	if r.j.settled[r.idx] || s.ended {
		s.mu.Unlock()
		return // cancelled meanwhile
	}
	s.cuts[t] = c
	j := s.addJob(c.parts)
	s.mu.Unlock()
	s.sendJob(j, c.parts)
}

// finish takes part k's outcome.
func (c *cutChunk) finish(k int, b []byte, err error) {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	if err == nil && b == nil {
		b = []byte{} // a chunk of zero-size raw results: in all the same
	}
	if err == nil {
		c.results[k] = b
	}
	c.errs[k] = err
	var drop []*clusterhook.Task
	if err != nil && k < c.failed {
		drop = c.parts[k+1 : c.failed]
		c.failed = k
	}
	for c.got < c.failed && c.results[c.got] != nil {
		c.got++
	}
	settle := c.got == c.failed
	var out []byte
	if settle {
		c.done = true
		if c.failed < len(c.parts) {
			err = c.errs[c.failed]
		} else {
			out, err = joinResults(c.results, c.counts, c.form)
		}
	}
	c.mu.Unlock()
	if len(drop) > 0 {
		// Together, in one request: once the parts before them are
		// settled, one purge of the parts' job and one cancellation;
		// else one of each per published part (see cancelLoop).
		c.s.CancelAll(drop)
	}
	if settle {
		c.s.settle(c.r, out, err)
	}
}

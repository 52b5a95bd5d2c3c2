//go:build linux

package pickle

import (
	"fmt"
	"iter"
	"strings"

	ogórek "github.com/kisielk/og-rek"
)

// Dict is a Python dict: its pairs in the order they were first set, as
// CPython's dicts keep them (3.7 and later), looked up by key as Python
// compares keys (1, 1.0 and True are one key; keys are compared and hashed
// by an ogórek.Dict that indexes the pairs). Setting a key that is there
// replaces its value and keeps its place, as in Python; a pickle that
// repeats a key decodes so too.
//
// Keys are what Python can hash, of the value model's kinds (see the
// package documentation): None is ogórek.None{} in a key. The zero value
// is an empty dict, ready to use. A Dict is not safe for concurrent use,
// nor to copy by assignment once set (the copy would share its index of
// keys): pass a *Dict.
// It costs O(n) memory for n pairs.
type Dict struct {
	pairs []dictPair
	idx   ogórek.Dict // key → index in pairs; made by the first Set
}

type dictPair struct{ k, v any }

// newDict returns an empty dict with room for n pairs (an empty one
// costs no index: the index is made by the first Set).
func newDict(n int) *Dict {
	if n == 0 {
		return &Dict{}
	}
	return &Dict{pairs: make([]dictPair, 0, n), idx: ogórek.NewDictWithSizeHint(n)}
}

// clone returns a copy of d that shares only its keys and values with d.
func (d *Dict) clone() Dict {
	c := newDict(d.Len())
	for k, v := range d.All() {
		c.Set(k, v)
	}
	return *c
}

// Len returns the number of pairs.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.pairs)
}

// Get returns the value of the key equal to k, as Python compares keys.
// It panics, as ogórek.Dict does, if k is of a type no key can have.
func (d *Dict) Get(k any) (any, bool) {
	if d.Len() == 0 {
		return nil, false
	}
	i, ok := d.idx.Get_(k)
	if !ok {
		return nil, false
	}
	return d.pairs[i.(int)].v, true
}

// Set sets the value of the key equal to k to v: in its place if the key
// is there, else last. It panics, as ogórek.Dict does, if k is of a type
// no key can have (nil among them: None is ogórek.None{} in a key).
func (d *Dict) Set(k, v any) {
	if d.idx == (ogórek.Dict{}) {
		d.idx = ogórek.NewDict()
	}
	if i, ok := d.idx.Get_(k); ok {
		d.pairs[i.(int)].v = v
		return
	}
	d.idx.Set(k, len(d.pairs))
	d.pairs = append(d.pairs, dictPair{k, v})
}

// All yields the pairs in their order.
func (d *Dict) All() iter.Seq2[any, any] {
	return func(yield func(k, v any) bool) {
		if d == nil {
			return
		}
		for _, p := range d.pairs {
			if !yield(p.k, p.v) {
				return
			}
		}
	}
}

// String writes the dict as Python's repr would, roughly (for
// debugging): {k: v, ...} in order.
func (d *Dict) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for k, v := range d.All() {
		if b.Len() > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v: %v", k, v)
	}
	b.WriteByte('}')
	return b.String()
}

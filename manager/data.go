//go:build linux

package manager

import (
	"context"
	"fmt"
	"math"
)

// Every proxy has these methods besides its own:
//
//   - Forget drops this process's reference to the object (see the
//     package documentation on the lifetime of objects);
//   - MarshalCBOR and UnmarshalCBOR let the proxy travel: as (part of) the
//     argument of a child process, over a Conn, or inside a value stored in
//     another object of the same manager.

// newProxy makes the proxy of a new object.
func newProxy[P any](ctx context.Context, m *Manager, kind string, opts []Option, init func(*P) *ref, args ...any) (*P, error) {
	if m != nil && m.kv != nil {
		return newKVProxy(ctx, m, kind, opts, init, args)
	}
	tok, err := create(ctx, m, kind, opts, args...)
	if err != nil {
		return nil, err
	}
	p := new(P)
	init(p).init(tok, m.c, true)
	return p, nil
}

// result calls op and decodes reply item i into a T.
func result[T any](ctx context.Context, r *ref, i int, op uint64, args ...any) (T, error) {
	var v T
	cc, err := r.call(ctx, op, args...)
	if err != nil {
		return v, err
	}
	err = cc.decode(i, &v)
	r.done(cc)
	return v, err
}

// ---- Dict ----

// Dict is a proxy of a dictionary held by a manager, like Python's
// SyncManager.dict(). Keys and values are encoded with CBOR; two keys are
// the same key when they encode the same (numbers of any integer type
// with the same value, for instance). Like Python's dict, it keeps its
// keys in the order they were first set.
//
// Each method is one request to the manager; a sequence of them is not
// atomic (guard it with a manager Lock).
type Dict[K comparable, V any] struct{ r ref }

// Item is a key and its value.
type Item[K comparable, V any] struct {
	_     struct{} `cbor:",toarray"`
	Key   K
	Value V
}

// String formats the item as "key: value".
func (it Item[K, V]) String() string { return fmt.Sprintf("%v: %v", it.Key, it.Value) }

// NewDict makes an empty Dict on m's server.
func NewDict[K comparable, V any](ctx context.Context, m *Manager, opts ...Option) (*Dict[K, V], error) {
	return newProxy(ctx, m, kindDict, opts, func(d *Dict[K, V]) *ref { return &d.r })
}

// Get returns the value of k, and whether k is in the dict.
func (d *Dict[K, V]) Get(ctx context.Context, k K) (V, bool, error) {
	var v V
	cc, err := d.r.call(ctx, opDictGet, k)
	if err != nil {
		return v, false, err
	}
	defer d.r.done(cc)
	if !cc.boolItem(1) {
		return v, false, nil
	}
	err = cc.decode(2, &v)
	return v, err == nil, err
}

// Set sets the value of k.
func (d *Dict[K, V]) Set(ctx context.Context, k K, v V) error {
	return d.r.do(ctx, opDictSet, k, v)
}

// Delete removes k and reports whether it was there.
func (d *Dict[K, V]) Delete(ctx context.Context, k K) (bool, error) {
	cc, err := d.r.call(ctx, opDictDelete, k)
	if err != nil {
		return false, err
	}
	ok := cc.boolItem(1)
	d.r.done(cc)
	return ok, nil
}

// Pop removes k and returns its value, and whether it was there.
func (d *Dict[K, V]) Pop(ctx context.Context, k K) (V, bool, error) {
	var v V
	cc, err := d.r.call(ctx, opDictPop, k)
	if err != nil {
		return v, false, err
	}
	defer d.r.done(cc)
	if !cc.boolItem(1) {
		return v, false, nil
	}
	err = cc.decode(2, &v)
	return v, true, err
}

// PopItem removes and returns the item set last, as Python's popitem
// does; ok is false when the dict is empty. On a replicated store it
// removes some item, not the last set.
func (d *Dict[K, V]) PopItem(ctx context.Context) (it Item[K, V], ok bool, err error) {
	cc, err := d.r.call(ctx, opDictPopItem)
	if err != nil {
		return it, false, err
	}
	defer d.r.done(cc)
	if !cc.boolItem(1) {
		return it, false, nil
	}
	if err = cc.decode(2, &it.Key); err == nil {
		err = cc.decode(3, &it.Value)
	}
	return it, true, err
}

// SetDefault returns the value of k, first setting it to v if k is not in
// the dict.
func (d *Dict[K, V]) SetDefault(ctx context.Context, k K, v V) (V, error) {
	return result[V](ctx, &d.r, 1, opDictSetDefault, k, v)
}

// Contains reports whether k is in the dict.
func (d *Dict[K, V]) Contains(ctx context.Context, k K) (bool, error) {
	cc, err := d.r.call(ctx, opDictContains, k)
	if err != nil {
		return false, err
	}
	ok := cc.boolItem(1)
	d.r.done(cc)
	return ok, nil
}

// Len returns the number of keys (on a replicated store, a count of the
// keys listed one by one: not one instant's).
func (d *Dict[K, V]) Len(ctx context.Context) (int, error) {
	return result[int](ctx, &d.r, 1, opDictLen)
}

// Keys returns the keys, in the order they were first set (on a
// replicated store: in no particular order, listed one by one).
func (d *Dict[K, V]) Keys(ctx context.Context) ([]K, error) {
	return result[[]K](ctx, &d.r, 1, opDictKeys)
}

// Values returns the values, in the order of their keys (on a replicated
// store, read key by key: not one instant's).
func (d *Dict[K, V]) Values(ctx context.Context) ([]V, error) {
	return result[[]V](ctx, &d.r, 1, opDictValues)
}

// Items returns the keys and values, in order (on a replicated store, as
// Keys and Values: read key by key).
func (d *Dict[K, V]) Items(ctx context.Context) ([]Item[K, V], error) {
	return result[[]Item[K, V]](ctx, &d.r, 1, opDictItems)
}

// Map returns a copy of the dict as a Go map.
func (d *Dict[K, V]) Map(ctx context.Context) (map[K]V, error) {
	items, err := d.Items(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[K]V, len(items))
	for _, it := range items {
		m[it.Key] = it.Value
	}
	return m, nil
}

// Update sets every key of m to its value, in one request. Keys new to
// the dict are added in no particular order.
func (d *Dict[K, V]) Update(ctx context.Context, m map[K]V) error {
	items := make([]Item[K, V], 0, len(m))
	for k, v := range m {
		items = append(items, Item[K, V]{Key: k, Value: v})
	}
	return d.UpdateItems(ctx, items...)
}

// UpdateItems sets the items in order, in one request (on a replicated
// store, one write per item: a reader may see some of them set).
func (d *Dict[K, V]) UpdateItems(ctx context.Context, items ...Item[K, V]) error {
	return d.r.do(ctx, opDictUpdate, items)
}

// Clear removes every key (on a replicated store, one by one: a key set
// meanwhile may stay).
func (d *Dict[K, V]) Clear(ctx context.Context) error { return d.r.do(ctx, opDictClear) }

// Forget drops this process's reference to the dict.
func (d *Dict[K, V]) Forget(ctx context.Context) error { return d.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (d *Dict[K, V]) MarshalCBOR() ([]byte, error) { return d.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (d *Dict[K, V]) UnmarshalCBOR(b []byte) error { return d.r.unmarshal(b, kindDict) }

// ---- List and Array ----

// seq is what List and Array share: the methods that read items and
// replace them in place.
type seq[T any] struct{ r ref }

// newSeq makes the proxy P (a List or Array) of a new sequence of kind
// holding items.
func newSeq[T, P any](ctx context.Context, m *Manager, kind string, items []T, opts []Option, init func(*P) *ref) (*P, error) {
	if items == nil {
		items = []T{}
	}
	return newProxy(ctx, m, kind, opts, init, items)
}

// Get returns item i; ErrIndex if there is none.
func (s *seq[T]) Get(ctx context.Context, i int) (T, error) {
	return result[T](ctx, &s.r, 1, opListGet, i)
}

// Set replaces item i.
func (s *seq[T]) Set(ctx context.Context, i int, v T) error {
	return s.r.do(ctx, opListSet, i, v)
}

// Len returns the number of items.
func (s *seq[T]) Len(ctx context.Context) (int, error) {
	return result[int](ctx, &s.r, 1, opListLen)
}

// Slice returns items lo to hi (excluded), with Python's slice rules:
// negative bounds count from the end, bounds out of range are clamped.
func (s *seq[T]) Slice(ctx context.Context, lo, hi int) ([]T, error) {
	return result[[]T](ctx, &s.r, 1, opListSlice, lo, hi)
}

// All returns a copy of every item.
func (s *seq[T]) All(ctx context.Context) ([]T, error) {
	return result[[]T](ctx, &s.r, 1, opListSlice, 0, math.MaxInt)
}

func (s *seq[T]) setSlice(ctx context.Context, lo, hi int, items []T) error {
	if items == nil {
		items = []T{}
	}
	return s.r.do(ctx, opListSetSlice, lo, hi, items)
}

// Forget drops this process's reference to the sequence.
func (s *seq[T]) Forget(ctx context.Context) error { return s.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (s *seq[T]) MarshalCBOR() ([]byte, error) { return s.r.marshal() }

// List is a proxy of a list held by a manager, like Python's
// SyncManager.list(). Indexes follow Python: a negative index counts from
// the end. Values are compared (Remove, Index, Count) by their CBOR
// encoding.
type List[T any] struct{ seq[T] }

// NewList makes a List on m's server holding items.
func NewList[T any](ctx context.Context, m *Manager, items []T, opts ...Option) (*List[T], error) {
	return newSeq(ctx, m, kindList, items, opts, func(l *List[T]) *ref { return &l.r })
}

// Append adds v at the end.
func (l *List[T]) Append(ctx context.Context, v T) error { return l.r.do(ctx, opListAppend, v) }

// Extend adds items at the end, in one request.
func (l *List[T]) Extend(ctx context.Context, items []T) error {
	if items == nil {
		items = []T{}
	}
	return l.r.do(ctx, opListExtend, items)
}

// Insert inserts v before item i (at the end if i is past it).
func (l *List[T]) Insert(ctx context.Context, i int, v T) error {
	return l.r.do(ctx, opListInsert, i, v)
}

// Pop removes and returns item i; -1 is the last.
func (l *List[T]) Pop(ctx context.Context, i int) (T, error) {
	return result[T](ctx, &l.r, 1, opListPop, i)
}

// Remove removes the first item equal to v and reports whether there was
// one.
func (l *List[T]) Remove(ctx context.Context, v T) (bool, error) {
	cc, err := l.r.call(ctx, opListRemove, v)
	if err != nil {
		return false, err
	}
	ok := cc.boolItem(1)
	l.r.done(cc)
	return ok, nil
}

// Index returns the index of the first item equal to v, or -1.
func (l *List[T]) Index(ctx context.Context, v T) (int, error) {
	return result[int](ctx, &l.r, 1, opListIndex, v)
}

// Count returns the number of items equal to v.
func (l *List[T]) Count(ctx context.Context, v T) (int, error) {
	return result[int](ctx, &l.r, 1, opListCount, v)
}

// SetSlice replaces items lo to hi (excluded, Python's rules) with items.
func (l *List[T]) SetSlice(ctx context.Context, lo, hi int, items []T) error {
	return l.setSlice(ctx, lo, hi, items)
}

// Clear removes every item.
func (l *List[T]) Clear(ctx context.Context) error { return l.r.do(ctx, opListClear) }

// Reverse reverses the list in place.
func (l *List[T]) Reverse(ctx context.Context) error { return l.r.do(ctx, opListReverse) }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (l *List[T]) UnmarshalCBOR(b []byte) error { return l.r.unmarshal(b, kindList) }

// Array is a proxy of a fixed-length sequence held by a manager, like
// Python's SyncManager.Array(typecode, sequence): its items can be read
// and replaced, but not added or removed.
type Array[T any] struct{ seq[T] }

// NewArray makes an Array on m's server holding items.
func NewArray[T any](ctx context.Context, m *Manager, items []T, opts ...Option) (*Array[T], error) {
	return newSeq(ctx, m, kindArray, items, opts, func(a *Array[T]) *ref { return &a.r })
}

// SetSlice replaces items lo to hi (excluded) with items, which must be
// as many (ErrIndex otherwise).
func (a *Array[T]) SetSlice(ctx context.Context, lo, hi int, items []T) error {
	return a.setSlice(ctx, lo, hi, items)
}

// UnmarshalCBOR receives a proxy; it connects on first use.
func (a *Array[T]) UnmarshalCBOR(b []byte) error { return a.r.unmarshal(b, kindArray) }

// ---- Namespace ----

// Namespace is a proxy of a set of named fields held by a manager, like
// Python's SyncManager.Namespace(): each field holds a value of any type,
// decoded into the caller's type when read.
type Namespace struct{ r ref }

// NewNamespace makes an empty Namespace on m's server.
func NewNamespace(ctx context.Context, m *Manager, opts ...Option) (*Namespace, error) {
	return newProxy(ctx, m, kindNamespace, opts, func(n *Namespace) *ref { return &n.r })
}

// Get decodes field name into dst, a pointer; an unset field is an error
// matching ErrNoField.
func (n *Namespace) Get(ctx context.Context, name string, dst any) error {
	cc, err := n.r.call(ctx, opNsGet, name)
	if err != nil {
		return err
	}
	err = cc.decode(1, dst)
	n.r.done(cc)
	return err
}

// Field returns field name of ns decoded as a T.
func Field[T any](ctx context.Context, ns *Namespace, name string) (T, error) {
	return result[T](ctx, &ns.r, 1, opNsGet, name)
}

// Set sets field name to v.
func (n *Namespace) Set(ctx context.Context, name string, v any) error {
	return n.r.do(ctx, opNsSet, name, v)
}

// Delete removes field name and reports whether it was set.
func (n *Namespace) Delete(ctx context.Context, name string) (bool, error) {
	cc, err := n.r.call(ctx, opNsDelete, name)
	if err != nil {
		return false, err
	}
	ok := cc.boolItem(1)
	n.r.done(cc)
	return ok, nil
}

// Fields returns the names of the fields set, sorted.
func (n *Namespace) Fields(ctx context.Context) ([]string, error) {
	return result[[]string](ctx, &n.r, 1, opNsFields)
}

// Forget drops this process's reference to the namespace.
func (n *Namespace) Forget(ctx context.Context) error { return n.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (n *Namespace) MarshalCBOR() ([]byte, error) { return n.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (n *Namespace) UnmarshalCBOR(b []byte) error { return n.r.unmarshal(b, kindNamespace) }

// ---- Value ----

// Value is a proxy of one value held by a manager, like Python's
// SyncManager.Value(typecode, value). Get and Set are each one request;
// to update it from several processes, hold a manager Lock around them,
// or use CompareAndSwap.
type Value[T any] struct{ r ref }

// NewValue makes a Value on m's server holding v.
func NewValue[T any](ctx context.Context, m *Manager, v T, opts ...Option) (*Value[T], error) {
	return newProxy(ctx, m, kindValue, opts, func(x *Value[T]) *ref { return &x.r }, v)
}

// Get returns the value.
func (x *Value[T]) Get(ctx context.Context) (T, error) {
	return result[T](ctx, &x.r, 1, opValueGet)
}

// Set replaces the value.
func (x *Value[T]) Set(ctx context.Context, v T) error { return x.r.do(ctx, opValueSet, v) }

// Swap replaces the value and returns the old one, atomically.
func (x *Value[T]) Swap(ctx context.Context, v T) (T, error) {
	return result[T](ctx, &x.r, 1, opValueSwap, v)
}

// CompareAndSwap replaces the value with new if it equals old (compared
// by their encoding, the pairs of maps in any order: see "Python
// clients" in the package documentation), atomically, and reports
// whether it did.
func (x *Value[T]) CompareAndSwap(ctx context.Context, old, new T) (bool, error) {
	cc, err := x.r.call(ctx, opValueCAS, old, new)
	if err != nil {
		return false, err
	}
	ok := cc.boolItem(1)
	x.r.done(cc)
	return ok, nil
}

// Forget drops this process's reference to the value.
func (x *Value[T]) Forget(ctx context.Context) error { return x.r.release(ctx) }

// MarshalCBOR encodes the proxy as a token of its object.
func (x *Value[T]) MarshalCBOR() ([]byte, error) { return x.r.marshal() }

// UnmarshalCBOR receives a proxy; it connects on first use.
func (x *Value[T]) UnmarshalCBOR(b []byte) error { return x.r.unmarshal(b, kindValue) }

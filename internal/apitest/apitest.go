//go:build linux

// Package apitest helps tests pin the API of a type, for the types that
// share code by embedding: what a caller can call must not change with
// the way the code is shared.
package apitest

import (
	"reflect"
	"strings"
)

// Methods lists the methods of *T, sorted by name, as "Name(params)
// results" without the receiver: "Get(context.Context, int) int32, error".
func Methods[T any]() []string {
	t := reflect.TypeFor[*T]()
	out := make([]string, 0, t.NumMethod())
	for i := range t.NumMethod() {
		m := t.Method(i).Type
		var in, res []string
		for j := 1; j < m.NumIn(); j++ {
			in = append(in, m.In(j).String())
		}
		for j := range m.NumOut() {
			res = append(res, m.Out(j).String())
		}
		out = append(out, t.Method(i).Name+"("+strings.Join(in, ", ")+") "+strings.Join(res, ", "))
	}
	return out
}

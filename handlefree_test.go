//go:build linux

package mp

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/codec"
)

// celsius has a codec of its own but carries no descriptor.
type celsius float64

func (c celsius) MarshalCBOR() ([]byte, error) { return codec.Marshal(float64(c) + 1000) }

func TestHandleFree(t *testing.T) {
	type inner struct{ C *Conn }
	type tree struct {
		Kids []*tree
		N    int
	}
	for _, c := range []struct {
		v              any
		encode, decode bool
	}{
		{1, true, true},
		{"s", true, true},
		{struct{ A []float64 }{}, true, true},
		{tree{}, true, true},
		{cbor.RawMessage(nil), true, true},
		{taskMsg{}, true, true},
		{&Conn{}, false, false},
		{inner{}, false, false},
		{map[string]*Lock{}, false, false},
		{[]any{}, false, true},
		{new(Queue[int]), false, false},
		{bootMsg{}, true, true},
		// A type of this package that encodes itself but is no handle:
		// the marker, not the package path, says which types are handles.
		{celsius(0), true, true},
		{[]celsius{}, true, true},
	} {
		typ := reflect.TypeOf(c.v)
		if got := codec.HandleFree(typ, false); got != c.encode {
			t.Errorf("%v: free to encode = %v", typ, got)
		}
		if got := codec.HandleFree(typ, true); got != c.decode {
			t.Errorf("%v: free to decode = %v", typ, got)
		}
	}
}

// TestHandleTypesMarked checks that every type of this package that
// encodes itself (and so may carry a descriptor) is a handleCarrier, the
// one way package codec learns which types carry handles: declared, or
// through a type it embeds.
func TestHandleTypesMarked(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	codecs, marked := map[string]bool{}, map[string]bool{}
	embeds := map[string][]string{}
	recvName := func(e ast.Expr) string {
		for {
			switch x := e.(type) {
			case *ast.StarExpr:
				e = x.X
			case *ast.IndexExpr:
				e = x.X
			case *ast.IndexListExpr:
				e = x.X
			case *ast.Ident:
				return x.Name
			default:
				return ""
			}
		}
	}
	for _, f := range pkgs["mp"].Files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					continue
				}
				name := recvName(d.Recv.List[0].Type)
				switch d.Name.Name {
				case "MarshalCBOR", "UnmarshalCBOR":
					codecs[name] = true
				case "carriesHandle":
					marked[name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok {
						continue
					}
					if st, ok := ts.Type.(*ast.StructType); ok {
						for _, fl := range st.Fields.List {
							if len(fl.Names) == 0 {
								embeds[ts.Name.Name] = append(embeds[ts.Name.Name], recvName(fl.Type))
							}
						}
					}
				}
			}
		}
	}
	if len(codecs) < 10 {
		t.Fatalf("found only %d types with CBOR methods: %v", len(codecs), codecs)
	}
	for name := range codecs {
		ok := marked[name]
		for _, e := range embeds[name] {
			ok = ok || marked[e]
		}
		if !ok {
			t.Errorf("%s encodes itself but is not a handleCarrier", name)
		}
	}
	for _, v := range []any{new(JoinableQueue[int]), new(Queue[string]), new(Value[int]), new(Array[int]),
		new(RawValue[int]), new(RawArray[int]), new(Conn), new(SharedMemory), new(Semaphore), new(BoundedSemaphore)} {
		if _, ok := v.(handleCarrier); !ok {
			t.Errorf("%T is not a handleCarrier", v)
		}
	}
}

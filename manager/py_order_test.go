//go:build linux

package manager_test

import (
	"strings"
	"testing"
)

// pyCPythonServer starts CPython's own SyncManager in the script, when
// the environment asks for it (see sameAsCPython).
const pyCPythonServer = `
if os.environ.get("MP_NO_CONNECT"):
    m = SyncManager()
    m.start()
def show(label, f):
    try:
        r = f()
    except Exception as e:
        r = "%s %s" % (type(e).__name__, e)
    print(label, repr(r))
`

// sameAsCPython runs script against the Go server and against CPython's
// own manager server, on every installed Python, and fails where the
// two print differently. Each line the script prints names what it
// shows.
func sameAsCPython(t *testing.T, script string) {
	_, env := pyManager(t)
	eachPython(t, func(t *testing.T, py string) {
		got := strings.Split(runPy(t, py, env, pyCPythonServer+script), "\n")
		want := strings.Split(runPy(t, py, append(env, "MP_NO_CONNECT=1"), pyCPythonServer+script), "\n")
		if len(got) != len(want) {
			t.Fatalf("%d lines from the Go server, %d from CPython's:\n%s\n---\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		bad := 0
		for i := range got {
			if got[i] != want[i] {
				bad++
				t.Errorf("Go server:      %s\nCPython server: %s", got[i], want[i])
			}
		}
		if bad == 0 && len(got) < 10 {
			t.Fatalf("the script printed only %q", got)
		}
	})
}

// TestPythonDictOrder: dicts keep their order through the Go server as
// through CPython's own (3.7+ dicts are ordered): a dict made from a dict,
// from keywords, from pairs, and from both; keys(), items(), values(),
// copy(), iteration, str() and popitem() (last in, first out) after
// update() with a dict, with keywords and with pairs; dicts nested in a
// dict, a list, a Namespace's fields, a Queue's items and a Value; dicts
// of every order of five keys of int, str, tuple and None; and the dicts
// that compare equal in another order (in, index, count, remove on a
// list of dicts).
func TestPythonDictOrder(t *testing.T) {
	sameAsCPython(t, `
import itertools
d = m.dict({'b': 1, 'a': 2, 'c': 3, 10: 'x', (2, 1): 'y', None: 'n', -5: 'z', 2.5: 'f', b'k': 'bytes'})
show('keys', lambda: list(d.keys()))
show('items', d.items)
show('values', d.values)
show('copy', d.copy)
show('str', lambda: str(d))
show('iter', lambda: list(d))
d.update({'z': 0, 'b': 9, 'y': 1})
d.update(x=1, w=2, b=3)
d.update([('v', 1), ('a', 5), ('u', 2)])
d.update({'t': 1}, s=2, a=6)
show('updated', d.copy)
show('popitem', d.popitem)
show('popitem again', d.popitem)
show('setdefault', lambda: d.setdefault('r', {'s2': 1, 's1': 2}))
show('after', d.copy)
show('keywords', lambda: m.dict(b=1, a=2, c=3).copy())
show('dict and keywords', lambda: m.dict({'q': 1, 'p': 2}, o=3, n=4, q=5).copy())
show('pairs', lambda: m.dict([('q', 1), ('p', 2), ('q', 3)]).copy())
show('kw str', lambda: str(m.dict(**{'zz': 1, 'aa': 2, 'mm': 3})))
d['k'] = {'z': 1, 'y': {'n': 1, 'm': 2}, 'x': [{'q': 1, 'p': 2}]}
show('nested', lambda: d['k'])
show('nested get', lambda: d.get('k'))
show('nested in copy', lambda: d.copy()['k'])
show('nested str', lambda: str(d))
show('nested pop', lambda: d.pop('k'))
l = m.list([{'b': 1, 'a': 2}])
l.append({'z': 1, 'y': 2})
l.extend([{'d': 1, 'c': 2}])
l.insert(0, {'f': 1, 'e': 2})
l[1] = {'h': 1, 'g': 2}
l += [{'j': 1, 'i': 2}]
show('list', lambda: list(l))
show('list item', lambda: l[2])
show('list slice', lambda: l[1:3])
show('list str', lambda: str(l))
show('list add', lambda: l + [{'l': 1, 'k': 2}])
show('in', lambda: {'y': 2, 'z': 1} in l)
show('not in', lambda: {'y': 2, 'z': 2} in l)
show('index', lambda: l.index({'y': 2, 'z': 1}))
show('index from', lambda: l.index({'y': 2, 'z': 1}, 1, 4))
show('count', lambda: l.count({'c': 2, 'd': 1}))
show('remove', lambda: l.remove({'c': 2, 'd': 1}))
show('list after', lambda: list(l))
show('list of a dict', lambda: list(m.list({'b': 1, 'a': 2, 'c': 3})))
show('dict of a dict', lambda: m.dict(m.dict({'b': 1, 'a': 2}).copy()).copy())
ns = m.Namespace(z=1, a={'q': 1, 'p': 2}, m=3, _h=4)
ns.y = {'s': 1, 'r': 2}
show('ns str', lambda: str(ns))
show('ns a', lambda: ns.a)
show('ns y', lambda: ns.y)
q = m.Queue()
q.put({'z': 1, 'y': 2, 'x': {'b': 1, 'a': 2}})
show('queue', q.get)
v = m.Value('O', {'b': 1, 'a': 2})
show('value', lambda: v.value)
v.value = {'d': 1, 'c': {'f': 1, 'e': 2}}
show('value set', lambda: v.value)
for perm in itertools.permutations(['a', 1, (1, None), None, 'b']):
    p = m.dict(dict(zip(perm, range(5))))
    p[perm[2]] = 'again'
    show('perm', lambda: (list(p.keys()), p.copy(), p.popitem()))
`)
}

// TestPythonIndicesBeyondInt64: list and Array methods given an index or
// a count that is an int beyond int64 (or at its ends) raise what
// CPython's own server raises, with its message — OverflowError for
// insert's and pop's index and for a repeat count, IndexError for an item
// index — and leave the list as CPython leaves it.
func TestPythonIndicesBeyondInt64(t *testing.T) {
	sameAsCPython(t, `
H = 2**70
l = m.list([1, 2, 3])
a = m.Array('d', [1.0, 2.0, 3.0])
e = m.list([])
for name, f in [
        ('insert H', lambda: l.insert(H, 'x')), ('insert -H', lambda: l.insert(-H, 'x')),
        ('insert 2**63', lambda: l.insert(2**63, 'x')), ('insert -2**63-1', lambda: l.insert(-2**63-1, 'x')),
        ('pop H', lambda: l.pop(H)), ('pop -H', lambda: l.pop(-H)),
        ('pop 2**63', lambda: l.pop(2**63)), ('pop -2**63-1', lambda: l.pop(-2**63-1)),
        ('pop empty H', lambda: e.pop(H)),
        ('mul H', lambda: l * H), ('mul -H', lambda: l * -H), ('rmul H', lambda: H * l),
        ('mul 2**63', lambda: l * 2**63), ('mul -2**63-1', lambda: l * (-2**63-1)),
        ('mul empty H', lambda: e * H), ('imul H', lambda: l.__imul__(H)),
        ('index H', lambda: l.index(H)), ('index str', lambda: l.index('x')),
        ('index tuple', lambda: l.index((1, 'a', None, 2.5))), ('index in 0:1', lambda: l.index(3, 0, 1)),
        ('mul 2**62', lambda: l * 2**62), ('rmul 2**62', lambda: 2**62 * l),
        ('imul 2**62', lambda: l.__imul__(2**62)),
        ('imul -H', lambda: l.__imul__(-H)), ('imul empty H', lambda: e.__imul__(H)),
        ('get H', lambda: l[H]), ('get -H', lambda: l[-H]), ('get 2**63', lambda: l[2**63]),
        ('set H', lambda: l.__setitem__(H, 0)), ('set -H', lambda: l.__setitem__(-H, 0)),
        ('del H', lambda: l.__delitem__(H)), ('del -H', lambda: l.__delitem__(-H)),
        ('del 2**63', lambda: l.__delitem__(2**63)),
        ('array get H', lambda: a[H]), ('array get -H', lambda: a[-H]),
        ('array set H', lambda: a.__setitem__(H, 1.0)), ('array get 2**63', lambda: a[2**63]),
        ('list', lambda: list(l)), ('array', lambda: list(a[:])), ('empty', lambda: list(e))]:
    show(name, f)
`)
}

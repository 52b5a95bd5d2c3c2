//go:build linux

package manager

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkPythonDictRequest is the server's own work for a request of
// py_manager_dict (d[k] = i, then d[k]), from the pickle read to the
// reply written to a socket, without the wait for the request.
func BenchmarkPythonDictRequest(b *testing.B) {
	serve := pyDictRequests(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		serve(i)
	}
}

// TestPythonDictRequestAllocs: the requests of py_manager_dict, d[k] = i
// and d[k] with an int key and value as CPython's proxies pickle them,
// are served with few allocations (27 a request with the general pickle
// decoder and encoder): they are read by pickle.DecodeRequest, which
// keeps the ident and method name, and replied to by encoding the reply
// in the socket's buffer.
func TestPythonDictRequestAllocs(t *testing.T) {
	serve := pyDictRequests(t)
	serve(0)
	serve(1)
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		serve(i)
		i++
	})
	if n > 12 {
		t.Fatalf("%v allocations to serve a request of py_manager_dict", n)
	}
	t.Logf("%v allocations a request", n)
}

// pyDictRequests returns a function that serves request i of
// py_manager_dict (d[42] = 12345 if i is even, d[42] if odd) on a dict of
// a Python connection as the server does, the replies written to a
// socket whose other end a goroutine reads.
func pyDictRequests(tb testing.TB) func(i int) {
	s := &Server{Python: true}
	s.init()
	o := s.pyAdd(kindDict, &dictObj{idx: map[string]int{}})
	var sid sessionID
	rand.Read(sid[:])
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // the client reads the replies until the server's end closes
		defer close(done)
		defer unix.Close(fds[1]) // only here: its number must not be reused while it is read
		buf := make([]byte, 64<<10)
		for {
			if n, err := unix.Read(fds[1], buf); n <= 0 || err != nil {
				return
			}
		}
	}()
	c := &sconn{s: s, c: &link{}}
	ps := &pySock{fd: fds[0]}
	tb.Cleanup(func() {
		ps.close()
		<-done
	})
	c.c.py.Store(ps)
	c.sess = s.join(sid, -1)
	c.r.s, c.r.sess = s, c.sess
	// pickle.dumps((ident, '__setitem__', (42, 12345), {}), protocol=4)
	// with the ident replaced, and the same for __getitem__.
	set := pyBenchRequest(tb, pyIdentOf(o.id), "948c0b5f5f7365746974656d5f5f944b2a4d393086947d9474942e")
	get := pyBenchRequest(tb, pyIdentOf(o.id), "948c0b5f5f6765746974656d5f5f944b2a85947d9474942e")
	var rd pyReader
	return func(i int) {
		msg := set
		if i%2 == 1 {
			msg = get
		}
		req, err := rd.decode(msg)
		if err != nil {
			tb.Fatal(err)
		}
		c.callMethod(req)
		if n := o.impl.(*dictObj).idx; len(n) != 1 {
			tb.Fatalf("the dict has %d keys, not 1", len(n))
		}
	}
}

// pyBenchRequest makes a request as CPython's client pickles it
// (protocol 4, a frame, memoized): ident, then the rest from the hex of
// its pickle.
func pyBenchRequest(b testing.TB, ident, rest string) []byte {
	tail, err := hex.DecodeString(rest)
	if err != nil {
		b.Fatal(err)
	}
	body := append(append([]byte{0x28, 0x8c, byte(len(ident))}, ident...), tail...)
	msg := []byte{0x80, 4, 0x95}
	msg = binary.LittleEndian.AppendUint64(msg, uint64(len(body)))
	return append(msg, body...)
}

//go:build linux

package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/frame"
)

var testKey = []byte("mp test key")

// seq40 is bytes 0..39, the random part of the known-answer challenges.
func seq40() []byte {
	b := make([]byte, 40)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// Known answers computed by CPython 3.12's
// multiprocessing.connection._create_response(b"mp test key", msg), with
// msg = b"{digest}" + bytes(range(40)), and for the legacy case
// msg = bytes(range(100, 120)).
func TestResponseMatchesCPython(t *testing.T) {
	want := map[string]string{
		"sha256":   "7b7368613235367d11b857bcedb0610aa27fbb2770b7048e3eb7409e4fa162813d51510ab6e19ce5",
		"md5":      "7b6d64357d4def83626197c7d7acc6a122a5f57306",
		"sha384":   "7b7368613338347d18df460cff95ce30e74f19cc0ba974c7c9e7a9c249bd09147a03770550ec0421955ea0b7ebf769cb54abc6d407975019",
		"sha3_256": "7b736861335f3235367d03944833ee930376398248831f00d1da583ad2b32b82c2f22731ed0e5a195f7e",
		"sha3_384": "7b736861335f3338347d4d3908d434f4641a4f0a894158699750c1e71bbb57cfa70ee6c17c6b085e8edc3c1b9be6914043d5c69c311d58724120",
	}
	for name, hexWant := range want {
		msg := append([]byte("{"+name+"}"), seq40()...)
		got, err := Response(testKey, msg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hex.EncodeToString(got) != hexWant {
			t.Errorf("%s: got %x, want %s", name, got, hexWant)
		}
		if err := Verify(testKey, msg, got); err != nil {
			t.Errorf("%s: own answer rejected: %v", name, err)
		}
	}
	legacy := make([]byte, 20)
	for i := range legacy {
		legacy[i] = byte(100 + i)
	}
	got, err := Response(testKey, legacy)
	if err != nil || hex.EncodeToString(got) != "8a757b8d90ccc4f3ff5bcc70bb83db56" {
		t.Fatalf("legacy: got %x, %v", got, err)
	}
}

func TestNewChallenge(t *testing.T) {
	msg, err := NewChallenge(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, []byte("{sha256}")) || len(msg) != len("{sha256}")+ChallengeLength {
		t.Fatalf("challenge %q", msg)
	}
	if _, err := NewChallenge(strings.NewReader("short")); err == nil {
		t.Fatal("short random source accepted")
	}
}

func TestVerify(t *testing.T) {
	msg := append([]byte("{sha256}"), seq40()...)
	good, _ := Response(testKey, msg)
	// A legacy (3.11) client answers any challenge with raw HMAC-MD5 over
	// the whole message.
	h := hmac.New(md5.New, testKey)
	h.Write(msg)
	legacy := h.Sum(nil)
	cases := []struct {
		name   string
		answer []byte
		ok     bool
	}{
		{"sha256", good, true},
		{"legacy md5", legacy, true},
		{"wrong key", mustResponse(t, []byte("other"), msg), false},
		{"flipped bit", flip(good, len(good)-1), false},
		{"short digest", good[:len(good)-1], false},
		{"no prefix", good[8:], false},
		{"unknown digest", append([]byte("{sha1}"), good[8:]...), false},
		{"empty", nil, false},
		{"brace too far", []byte("{sha256sha256}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), false},
	}
	for _, c := range cases {
		err := Verify(testKey, msg, c.answer)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if err != nil && !errors.Is(err, ErrAuthentication) {
			t.Errorf("%s: %v does not match ErrAuthentication", c.name, err)
		}
	}
}

func mustResponse(t *testing.T, key, msg []byte) []byte {
	t.Helper()
	r, err := Response(key, msg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

func TestResponseRejects(t *testing.T) {
	for _, msg := range [][]byte{nil, []byte("short"), make([]byte, 19), make([]byte, 30), []byte("{nope}" + strings.Repeat("x", 40))} {
		if _, err := Response(testKey, msg); !errors.Is(err, ErrAuthentication) {
			t.Errorf("%q: err = %v", msg, err)
		}
	}
}

// pipePair returns two Streams joined by an in-memory pipe that fails
// reads and writes after a while, so a broken handshake cannot hang.
func pipePair(t *testing.T) (Stream, Stream) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	d := time.Now().Add(10 * time.Second)
	a.SetDeadline(d)
	b.SetDeadline(d)
	return Stream{a}, Stream{b}
}

func TestHandshake(t *testing.T) {
	for _, tc := range []struct {
		name           string
		server, client []byte
		ok             bool
	}{
		{"same key", testKey, testKey, true},
		{"wrong key", testKey, []byte("wrong"), false},
		{"empty keys", []byte{}, []byte{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := pipePair(t)
			done := make(chan error, 1)
			go func() {
				err := Server(s, tc.server, nil)
				if err != nil {
					s.RW.(net.Conn).Close()
				}
				done <- err
			}()
			cerr := Client(c, tc.client, nil)
			if cerr != nil {
				c.RW.(net.Conn).Close()
			}
			serr := <-done
			if tc.ok && (cerr != nil || serr != nil) {
				t.Fatalf("client %v, server %v", cerr, serr)
			}
			if !tc.ok && (!errors.Is(cerr, ErrAuthentication) || !errors.Is(serr, ErrAuthentication)) {
				t.Fatalf("client %v, server %v: want ErrAuthentication on both", cerr, serr)
			}
		})
	}
}

// answerLikeCPython311 answers like CPython 3.11: raw HMAC-MD5 of whatever follows
// the challenge tag.
func answerLikeCPython311(m Messenger, key []byte) error {
	msg, err := m.RecvBytes(MaxMessage)
	if err != nil {
		return err
	}
	h := hmac.New(md5.New, key)
	h.Write(bytes.TrimPrefix(msg, challengeTag))
	if err := m.SendBytes(h.Sum(nil)); err != nil {
		return err
	}
	v, err := m.RecvBytes(MaxMessage)
	if err == nil && !bytes.Equal(v, welcome) {
		err = errors.New("rejected")
	}
	return err
}

// deliverLikeCPython311 challenges like CPython 3.11: 20 bytes, no prefix.
func deliverLikeCPython311(m Messenger, key []byte) error {
	msg := bytes.Repeat([]byte{7}, 20)
	if err := m.SendBytes(append(append([]byte(nil), challengeTag...), msg...)); err != nil {
		return err
	}
	got, err := m.RecvBytes(MaxMessage)
	if err != nil {
		return err
	}
	h := hmac.New(md5.New, key)
	h.Write(msg)
	if !hmac.Equal(got, h.Sum(nil)) {
		m.SendBytes(failure)
		return errors.New("wrong digest")
	}
	return m.SendBytes(welcome)
}

func TestLegacyPeers(t *testing.T) {
	t.Run("legacy client", func(t *testing.T) {
		s, c := pipePair(t)
		done := make(chan error, 1)
		go func() { done <- Server(s, testKey, nil) }()
		if err := answerLikeCPython311(c, testKey); err != nil {
			t.Fatal(err)
		}
		if err := deliverLikeCPython311(c, testKey); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("legacy server", func(t *testing.T) {
		s, c := pipePair(t)
		done := make(chan error, 1)
		go func() {
			err := deliverLikeCPython311(s, testKey)
			if err == nil {
				err = answerLikeCPython311(s, testKey)
			}
			done <- err
		}()
		if err := Client(c, testKey, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// rw is a ReadWriter over fixed input that records what is written.
type rw struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (r *rw) Read(p []byte) (int, error)  { return r.in.Read(p) }
func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

func frames(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = append(frame.AppendHeader(b, len(m)), m...)
	}
	return b
}

func TestStream(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0}
	cases := []struct {
		name string
		in   []byte
		want error // nil: a message
	}{
		{"message", frames([]byte("hello")), nil},
		{"empty message", frames(nil), nil},
		{"long-form header", append([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2}, "hi"...), nil},
		{"nothing", nil, io.EOF},
		{"half header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"half long header", []byte{0xff, 0xff, 0xff, 0xff, 0}, io.ErrUnexpectedEOF},
		{"truncated body", []byte{0, 0, 0, 9, 'a'}, io.ErrUnexpectedEOF},
		{"oversized", []byte{0, 0, 1, 1}, ErrAuthentication},
		{"huge", huge, ErrAuthentication},
		{"negative", []byte{0xff, 0xff, 0xff, 0xfe}, ErrAuthentication},
		{"uint64 overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0}, ErrAuthentication},
	}
	for _, c := range cases {
		r := &rw{in: bytes.NewReader(c.in)}
		msg, err := Stream{r}.RecvBytes(MaxMessage)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || msg != nil {
			t.Errorf("%s: got %q, %v; want %v", c.name, msg, err, c.want)
		}
	}
	// An oversized message is refused from its header: the body stays
	// unread.
	r := &rw{in: bytes.NewReader(frames(make([]byte, 300)))}
	if _, err := (Stream{r}).RecvBytes(MaxMessage); !errors.Is(err, ErrAuthentication) || r.in.Len() != 300 {
		t.Fatalf("err %v, %d bytes left", err, r.in.Len())
	}
	// A frame is read exactly: the next one stays in the stream.
	r = &rw{in: bytes.NewReader(frames([]byte("one"), []byte("two")))}
	if m, err := (Stream{r}).RecvBytes(MaxMessage); err != nil || string(m) != "one" || r.in.Len() != 7 {
		t.Fatalf("got %q %v, %d left", m, err, r.in.Len())
	}
}

// checkErr fails unless err is nil, a handshake failure or an end of input.
func checkErr(t *testing.T, err error) {
	if err != nil && !errors.Is(err, ErrAuthentication) && err != io.EOF && err != io.ErrUnexpectedEOF {
		t.Fatalf("unexpected error class: %v", err)
	}
}

// firstFrame decodes the first frame of b the way the handshake does.
func firstFrame(b []byte) ([]byte, bool) {
	m, err := Stream{&rw{in: bytes.NewReader(b)}}.RecvBytes(MaxMessage)
	return m, err == nil
}

// FuzzDeliverChallenge feeds arbitrary peer bytes to the challenging side.
// It succeeds exactly when the first frame is a valid answer.
func FuzzDeliverChallenge(f *testing.F) {
	zero := make([]byte, ChallengeLength)
	msg := append([]byte("{sha256}"), zero...)
	good, _ := Response(testKey, msg)
	h := hmac.New(md5.New, testKey)
	h.Write(msg)
	f.Add(testKey, frames(good))
	f.Add(testKey, frames(h.Sum(nil)))
	f.Add(testKey, frames(flip(good, 20)))
	f.Add([]byte{}, frames([]byte("{sha3_384}xyz")))
	f.Add(testKey, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add(testKey, []byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, key, peer []byte) {
		r := &rw{in: bytes.NewReader(peer)}
		err := DeliverChallenge(Stream{r}, key, bytes.NewReader(zero))
		checkErr(t, err)
		answer, ok := firstFrame(peer)
		valid := ok && Verify(key, msg, answer) == nil
		if (err == nil) != valid {
			t.Fatalf("err %v, but answer valid = %v", err, valid)
		}
		// What we wrote: the challenge, then a verdict if an answer came.
		out := r.out.Bytes()
		ch, ok := firstFrame(out)
		if !ok || !bytes.Equal(ch, append(append([]byte(nil), challengeTag...), msg...)) {
			t.Fatalf("challenge sent: %q", out)
		}
		if err == nil && !bytes.HasSuffix(out, frames(welcome)) {
			t.Fatal("success without #WELCOME#")
		}
		if err != nil && bytes.HasSuffix(out, frames(welcome)) {
			t.Fatal("#WELCOME# sent on failure")
		}
	})
}

// FuzzAnswerChallenge feeds arbitrary peer bytes to the answering side. It
// succeeds only when a well-formed challenge and #WELCOME# arrived, and
// then it sent the right answer.
func FuzzAnswerChallenge(f *testing.F) {
	modern := append([]byte("#CHALLENGE#{sha256}"), seq40()...)
	f.Add(testKey, frames(modern, welcome))
	f.Add(testKey, frames(modern, failure))
	f.Add(testKey, frames(append([]byte("#CHALLENGE#"), make([]byte, 20)...), welcome))
	f.Add(testKey, frames([]byte("#CHALLENGE#{md5}0123456789012345"), welcome))
	f.Add(testKey, frames([]byte("#CHALLENGE#{"), welcome))
	f.Add([]byte{}, frames([]byte("#WELCOME#")))
	f.Add(testKey, []byte{0, 0, 0, 200})
	f.Fuzz(func(t *testing.T, key, peer []byte) {
		r := &rw{in: bytes.NewReader(peer)}
		err := AnswerChallenge(Stream{r}, key)
		checkErr(t, err)
		if err != nil {
			return
		}
		ch, _ := firstFrame(peer)
		want, rerr := Response(key, bytes.TrimPrefix(ch, challengeTag))
		if rerr != nil || !bytes.Equal(r.out.Bytes(), frames(want)) {
			t.Fatalf("succeeded after sending %x (want %x, %v)", r.out.Bytes(), want, rerr)
		}
	})
}

// FuzzResponseVerify checks that every answer Response makes is accepted
// by Verify, that a different key is refused, and that nothing panics.
func FuzzResponseVerify(f *testing.F) {
	f.Add(testKey, append([]byte("{sha256}"), seq40()...), []byte("{md5}0123456789abcdef"))
	f.Add([]byte("k"), make([]byte, 20), make([]byte, 16))
	f.Add([]byte("k"), []byte("{sha3_384}"), []byte("{sha3_384"))
	f.Fuzz(func(t *testing.T, key, msg, answer []byte) {
		checkErr(t, Verify(key, msg, answer))
		resp, err := Response(key, msg)
		checkErr(t, err)
		if err != nil {
			return
		}
		if err := Verify(key, msg, resp); err != nil {
			t.Fatalf("own answer rejected: %v", err)
		}
		if Verify(append([]byte{1}, key...), msg, resp) == nil {
			t.Fatal("answer accepted under another key")
		}
	})
}

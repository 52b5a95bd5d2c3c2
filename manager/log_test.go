//go:build linux

package manager_test

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/connection"
	"github.com/go-mp/mp/internal/logtest"
	"github.com/go-mp/mp/manager"
	"golang.org/x/sys/unix"
)

type holderArgs struct {
	Lock  *manager.Lock
	RLock *manager.RLock
	Sem   *manager.BoundedSemaphore
	Q     *manager.Queue[int]
	Out   *mp.Conn // the child reports there that its Get's request left
}

// holdAndGet takes a Lock, an RLock (twice), two units of a
// BoundedSemaphore, then an item of a queue that it never receives: its
// Get is parked once its request is sent, until the process is killed.
var holdAndGet = mp.RegisterProc("manager_test.holdAndGet", func(a holderArgs) error {
	ctx := context.Background()
	if err := holdLocks(ctx, a.Lock, a.RLock, a.Sem); err != nil {
		return err
	}
	return parkedGet(ctx, a.Q, a.Out)
})

// TestManagerLogsClientGone: a client process holding a Lock, an RLock,
// two units of a BoundedSemaphore and a queue item it never received is
// killed with SIGKILL. The server started with Options.Logger reports,
// through that logger in this process, that client's pid and all it gave
// back. A peer with a wrong key is reported too, without the key.
func TestManagerLogsClientGone(t *testing.T) {
	ctx := testCtx(t)
	rec := logtest.New()
	m, err := manager.Start(ctx, &manager.Options{Logger: rec.Logger()})
	check(t, err)
	defer m.Close()
	lock := must[*manager.Lock](t)(manager.NewLock(ctx, m))
	rlock := must[*manager.RLock](t)(manager.NewRLock(ctx, m))
	sem := must[*manager.BoundedSemaphore](t)(manager.NewBoundedSemaphore(ctx, m, 3))
	q := must[*manager.Queue[int]](t)(manager.NewQueue[int](ctx, m, 0))
	check(t, q.Put(ctx, 7))

	r, w, err := mp.Pipe(false)
	check(t, err)
	defer r.Close()
	p := mp.NewProcess(holdAndGet, holderArgs{Lock: lock, RLock: rlock, Sem: sem, Q: q, Out: w})
	err = p.Start()
	w.Close()
	check(t, err)
	defer func() {
		p.Kill()
		p.Join(context.Background())
	}()
	var sent int
	check(t, r.Recv(&sent))
	stopProcess(t, p.Pid())
	// The server has taken the item and answered.
	waitFor(t, func() bool { return must[int](t)(q.Qsize(ctx)) == 0 })
	check(t, unix.Kill(p.Pid(), unix.SIGKILL))
	p.Join(ctx) // reports the kill

	gone, err := rec.Wait(ctx, "mp: manager client gone", func(r logtest.Record) bool {
		pid, _ := r.Int("pid")
		return int(pid) == p.Pid()
	})
	check(t, err)
	if gone.Level != slog.LevelWarn {
		t.Errorf("level %v: %v", gone.Level, gone)
	}
	for k, want := range map[string]int64{"locks": 1, "rlocks": 1, "semaphore_units": 2, "queue_items": 1} {
		if got, ok := gone.Int(k); !ok || got != want {
			t.Errorf("%s = %d, want %d: %v", k, got, want, gone)
		}
	}
	if refs, _ := gone.Int("refs"); refs < 4 {
		t.Errorf("refs = %d, want the 4 objects at least: %v", refs, gone)
	}
	// What was given back is there.
	if err := lock.Acquire(ctx); !errors.Is(err, mp.ErrOwnerDied) {
		t.Errorf("Acquire of the dead client's lock: %v", err)
	}
	equal(t, "the item put back", must[int](t)(q.TryGet(ctx)), 7)

	wrong := []byte("not the manager's key")
	if _, err := connection.Dial(ctx, m.Network(), m.Address(), wrong); !errors.Is(err, mp.ErrAuthentication) {
		t.Fatalf("Dial with a wrong key: %v", err)
	}
	hs, err := rec.Wait(ctx, "mp: handshake failed", nil)
	check(t, err)
	if hs.Str("remote") == "" || !strings.Contains(hs.Str("reason"), mp.ErrAuthentication.Error()) {
		t.Errorf("handshake record: %v", hs)
	}
	text := rec.Text()
	for _, key := range [][]byte{wrong, mp.CurrentProcess().Authkey} {
		if strings.Contains(text, string(key)) || strings.Contains(text, hex.EncodeToString(key)) {
			t.Fatalf("the log holds a key:\n%s", text)
		}
	}
}

//go:build linux

package bench

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/manager"
)

func init() {
	add(Workload{Name: "py_manager_dict", Doc: "python3 SyncManager clients doing manager_dict against the Go manager server", Run: benchPyManagerDict})
}

// pyManagerDict is py_baseline.py's bench_manager_dict, connected to the
// server given by the environment instead of starting CPython's: the same
// client, so that the two figures compare the servers.
const pyManagerDict = `
import os, sys, time
from multiprocessing.managers import SyncManager
addr = os.environ["MP_ADDRESS"]
m = SyncManager(address="\0" + addr[1:], authkey=bytes.fromhex(os.environ["MP_KEY"]))
m.connect()
n = int(sys.argv[1])
d = m.dict()
t = time.perf_counter()
for i in range(n):
    d[i % 100] = i
    d[i % 100]
print((time.perf_counter() - t) / (2 * n) * 1e6)
`

// benchPyManagerDict runs pyManagerDict (python3) against a Go manager
// started with Options.Python, on a unix socket as CPython's Manager()
// uses.
func benchPyManagerDict(scale float64) ([]Result, error) {
	n := scaled(10000, scale)
	ctx := context.Background()
	m, err := manager.Start(ctx, &manager.Options{Python: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	cmd := exec.CommandContext(ctx, "python3", "-c", pyManagerDict, strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "MP_ADDRESS="+m.Address(), "MP_KEY="+hex.EncodeToString(mp.CurrentProcess().Authkey))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("py_manager_dict: python3: %w", err)
	}
	us, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return nil, fmt.Errorf("py_manager_dict: python3 printed %q", out)
	}
	return []Result{{"py_manager_dict", us, "us/op"}}, nil
}

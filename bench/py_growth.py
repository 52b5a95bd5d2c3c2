#!/usr/bin/env python3
"""CPython's side of `mp bench -growth`: the same workloads, names and units.

Each workload measures a cost at several sizes of the work, so that the
growth from one size to the next can be compared with mp's measured in the
same sitting:

    go build -o /tmp/mp ./cmd/mp && /tmp/mp bench -json -growth
    python3 bench/py_growth.py -json

Usage: py_growth.py [-json] [-scale F] [workload ...]
"""
import json
import os
import sys
import time

JSON = False
SCALE = 1.0


def emit(name, value, unit):
    if JSON:
        print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)
    else:
        print(f"{name}\t{value:.3f}\t{unit}", flush=True)


def scaled(n):
    return max(1, int(n * SCALE))


# ---- map of variable-size items (issue 11) ----


# ---- queue items of every size (issue 11) ----


# ---- manager with many clients (issue 11) ----


# ---- a manager client leaving (issue 11) ----

from multiprocessing.managers import DictProxy, SyncManager  # noqa: E402

LEAVE_SIZES = [(1, "1"), (1000, "1k"), (10000, "10k"), (100000, "100k")]

_leave_shared = {"k": 1}  # the server process's own copy is the one served


def _leave_get_shared():
    return _leave_shared


class LeaveManager(SyncManager):
    """A SyncManager serving one shared dict, as mp's Named Dict."""


LeaveManager.register("leave_shared", callable=_leave_get_shared, proxytype=DictProxy)


def manager_leave():
    """mp's manager_leave: ms per short-lived client (connect, get the shared
    dict, one get on it, disconnect) while the server holds K objects.

    The K objects are the shared dict and K-1 dicts made by this process
    through BaseManager._create, which leaves each referenced once on the
    server as a proxy would: making real proxies with m.dict() costs 3
    connections each (create, incref, decref), 100k of them minutes. What differs from mp: CPython's client opens a
    connection per management request (connect's dummy, the create that
    returns the shared dict, the proxy's incref and the decref after it,
    the decref when the proxy is dropped) besides the proxy's own
    connection, six in all against mp's one; its decrefs are synchronous,
    so the cycle ends when the last one returns, where mp's waits until
    the server has ended the session. Scale shrinks the number of cycles,
    not of objects."""
    m = LeaveManager()
    m.start()
    try:
        m._create("leave_shared")  # held by the server, as mp's Named Dict
        objects = 1
        for k, suffix in LEAVE_SIZES:
            while objects < k:
                m._create("dict")
                objects += 1

            def cycle():
                c = LeaveManager(address=m.address, authkey=m._authkey)
                c.connect()
                d = c.leave_shared()
                d.get("k")
                del d  # the decref, and the proxy's connection closed

            for _ in range(10):  # warm up
                cycle()
            n = scaled(500)
            t = time.perf_counter()
            for _ in range(n):
                cycle()
            emit("manager_leave_" + suffix, (time.perf_counter() - t) * 1e3 / n, "ms/client")
    finally:
        m.shutdown()


ALL = {
    # map
    # queue
    # manager clients
    # manager leave
    "manager_leave": manager_leave,
}

if __name__ == "__main__":
    args = sys.argv[1:]
    if "-json" in args:
        JSON = True
        args.remove("-json")
    if "-scale" in args:
        i = args.index("-scale")
        SCALE = float(args[i + 1])
        del args[i : i + 2]
    names = args or list(ALL)
    if not JSON:
        print(f"# python {sys.version.split()[0]} cores={os.cpu_count()}")
    for name in names:
        ALL[name]()

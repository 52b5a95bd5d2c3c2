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

MAP_VAR_POINTS = [
    ("map_var_1k_100k", 1 << 10, 100_000),
    ("map_var_1k_300k", 1 << 10, 300_000),
    ("map_var_1k_1m", 1 << 10, 1 << 20),
    ("map_var_64k_16k", 64 << 10, 16 << 10),
]


def _reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    raise RuntimeError("no VmHWM")


def map_var():
    """pool.map(len) over bytes items, default chunks: us/item, peak RSS / input."""
    import gc
    import multiprocessing as mp

    with mp.Pool(2) as pool:
        # A warm-up of 32 MiB, as mp's.
        pool.map(len, [bytes([i & 255]) * 1024 for i in range(32 << 10)])
        for name, size, num in MAP_VAR_POINTS:
            n = scaled(num)
            gc.collect()
            items = [bytes([i & 255]) * size for i in range(n)]
            _reset_peak_rss()
            t = time.perf_counter()
            rs = pool.map(len, items)
            dt = time.perf_counter() - t
            assert len(rs) == n and rs[-1] == size
            peak = _peak_rss()
            emit(name, dt / n * 1e6, "us/item")
            emit(name + "_rss", peak / (n * size), "x input")
            del items, rs


# ---- queue items of every size (issue 11) ----


# ---- manager with many clients (issue 11) ----


# ---- a manager client leaving (issue 11) ----


ALL = {
    # map
    "map_var": map_var,
    # queue
    # manager clients
    # manager leave
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

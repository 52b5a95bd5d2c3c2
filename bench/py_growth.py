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

QUEUE_SIZES = [(8, "8"), (1 << 10, "1k"), (64 << 10, "64k"), (256 << 10, "256k"), (1 << 20, "1m"), (4 << 20, "4m")]


def _queue_size_producer(q, size, n):
    item = bytes(i & 0xFF for i in range(size))
    for _ in range(n):
        q.put(item)


def bench_queue_size():
    """[]byte items of 8 B to 4 MiB through a Queue, child to parent; the
    clock starts at the first item, as in mp's queue_size."""
    import multiprocessing as mp

    for size, name in QUEUE_SIZES:
        n = max(2, scaled(min(200000, (3 << 29) // size)))
        q = mp.Queue()
        p = mp.Process(target=_queue_size_producer, args=(q, size, n))
        p.start()
        q.get()
        t = time.perf_counter()
        for _ in range(n - 1):
            q.get()
        dt = time.perf_counter() - t
        p.join()
        rate = (n - 1) / dt
        emit(f"queue_size_{name}", rate / 1e3, "k items/s")
        emit(f"queue_size_{name}_mbs", rate * size / 1e6, "MB/s")


# ---- manager with many clients (issue 11) ----


# ---- a manager client leaving (issue 11) ----


ALL = {
    # map
    # queue
    "queue_size": bench_queue_size,
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

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


ALL = {
    # map
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

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

CLIENT_COUNTS = [1, 2, 8, 32, 128]


def _mgr_client(i, d, ready, go, end, out):
    d[i % 100] = 0  # connects
    ready.put(i)
    go.wait()
    stop = end.value
    cpu0 = _self_cpu()
    lat = []
    ops = 0
    k = 0
    while True:
        t0 = time.time()
        if t0 >= stop:
            break
        if k % 2 == 0:
            d[(i + k) % 100] = k
        else:
            d.get((i + k - 1) % 100)
        lat.append(time.time() - t0)
        ops += 1
        k += 1
    out.put((ops, _self_cpu() - cpu0, lat))


def _mgr_clients(n, window):
    import multiprocessing as mpc
    ctx = mpc.get_context("fork")
    with ctx.Manager() as m:
        d = m.dict()
        ready, out = ctx.Queue(), ctx.Queue()
        go, end = ctx.Event(), ctx.Value("d", 0.0, lock=False)
        ps = [ctx.Process(target=_mgr_client, args=(i, d, ready, go, end, out)) for i in range(n)]
        for p in ps:
            p.start()
        for _ in range(n):
            ready.get()
        spid = m._process.pid
        cpu0 = _proc_cpu(spid)
        end.value = time.time() + window
        go.set()
        time.sleep(max(0.0, end.value - time.time()))
        cpu1 = _proc_cpu(spid)
        ops, ccpu, lat = 0, 0.0, []
        for _ in range(n):
            o, c, l = out.get()
            ops += o
            ccpu += c
            lat.extend(l)
        for p in ps:
            p.join()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0
    name = f"manager_clients_{n}"
    emit(name + "_ops", ops / window / 1e3, "k ops/s")
    emit(name + "_p99", p99 * 1e3, "ms")
    emit(name + "_srvcpu", (cpu1 - cpu0) * 1e6 / max(ops, 1), "us/op")
    emit(name + "_clicpu", ccpu * 1e6 / max(ops, 1), "us/op")


def _self_cpu():
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 1 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def manager_clients():
    window = max(0.2, 2.0 * SCALE)
    for n in CLIENT_COUNTS:
        _mgr_clients(n, window)


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
    "map_var": map_var,
    # queue
    "queue_size": bench_queue_size,
    # manager clients
    "manager_clients": manager_clients,
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

# The Python half of examples/pyinterop: a plain CPython program (3.11 or
# later, standard library only) that uses the Go manager's named queue and
# dict, and a Go-made shared memory block by its name.
#
#   MP_AUTHKEY=<hex key> python3 worker.py HOST:PORT SHM_NAME
import os
import sys
from multiprocessing import resource_tracker
from multiprocessing.managers import BaseManager
from multiprocessing.shared_memory import SharedMemory


class M(BaseManager):
    pass


# The names the Go program gave with manager.Named("jobs") and
# manager.Named("results").
M.register("get_jobs")
M.register("get_results")

host, port = sys.argv[1].rsplit(":", 1)
m = M(address=(host, int(port)), authkey=bytes.fromhex(os.environ["MP_AUTHKEY"]))
m.connect()
jobs, results = m.get_jobs(), m.get_results()

while True:
    job = jobs.get()
    if job == "":  # the Go program's "no more jobs"
        break
    results[job] = len(job)
    print(f"python: took {job!r} from the Go queue, stored {len(job)} in the dict")

# The block is the Go program's: it unlinks it. Attaching registers it
# with this process's resource tracker, which would unlink it (and warn)
# when Python exits, so take it off the tracker's list.
shm = SharedMemory(name=sys.argv[2])
resource_tracker.unregister(shm._name, "shared_memory")
a = shm.buf.cast("d")  # the float64s Go wrote, in the machine's order
count, total = len(a), sum(a)
for i in range(count):
    a[i] *= 2
a.release()
shm.close()
results["sum"] = int(total)
print(f"python: summed {count} float64s in shared memory {sys.argv[2]!r}: {total:g}; doubled them")

"""Producer process -> consumer process throughput of shmkit.Queue from Python.

Small and self-contained (the side-by-side comparison with
multiprocessing.Queue, SimpleQueue and faster-fifo is benchmarks/bench_queue.py).
Measures messages/s for `bytes` of 64 B, 1 KB and 64 KB, one at a time
(put/get) and in batches (put_many/get_many), median of repeats; writes
bench-results/queue_throughput.json.

    python benchmarks/queue_throughput.py [--quick]
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
import uuid

import shmkit
from shmkit.queue import Queue

BATCH = 256


def producer(q, payload, n, batch):
    if batch:
        items = [payload] * BATCH
        for _ in range(n // BATCH):
            q.put_many(items)
    else:
        put = q.put
        for _ in range(n):
            put(payload)


def run_once(size, n, batch, ctx):
    name = f"shmkit-qbench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    q = Queue(name, maxsize=0, ring_bytes=max(8 << 20, 64 * size), create=True)
    try:
        payload = b"x" * size
        n = n // BATCH * BATCH
        p = ctx.Process(target=producer, args=(q, payload, n, batch))
        t0 = None
        p.start()
        got = 0
        if batch:
            first = q.get_many(BATCH)
            t0 = time.perf_counter()
            got = len(first)
            get_many = q.get_many
            while got < n:
                got += len(get_many(BATCH))
        else:
            q.get()
            t0 = time.perf_counter()
            got = 1
            get = q.get
            while got < n:
                get()
                got += 1
        dt = time.perf_counter() - t0
        p.join()
        return (n - (BATCH if batch else 1)) / dt
    finally:
        q.close()
        shmkit.unlink(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join("bench-results", "queue_throughput.json"))
    args = ap.parse_args()
    ctx = mp.get_context("fork")
    counts = {64: 1_000_000, 1024: 300_000, 65536: 10_000}
    if args.quick:
        counts = {k: v // 10 for k, v in counts.items()}
    results = []
    for size, n in counts.items():
        for batch in (False, True):
            rates = [run_once(size, n, batch, ctx) for _ in range(args.repeats)]
            med = statistics.median(rates)
            mode = "batch" if batch else "single"
            results.append({"bytes": size, "mode": mode, "msgs_per_s": med,
                            "MB_per_s": med * size / 1e6, "repeats": rates})
            print(f"{size:>6} B  {mode:<6}  {med / 1e6:8.3f} M msgs/s  "
                  f"{med * size / 1e6:9.1f} MB/s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(),
                   "python": platform.python_version(), "shmkit": shmkit.__version__,
                   "results": results}, f, indent=2)


if __name__ == "__main__":
    main()

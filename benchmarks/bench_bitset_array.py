"""Bitset and Array from Python, side by side with what users have today.

    .venv/bin/python benchmarks/bench_bitset_array.py [--quick]

* one process: shmkit.Bitset / shmkit.Array operations against
  multiprocessing.Array (with its lock, as process-safe code must use it,
  and without), and plain in-process Python (bytearray / list: the ceiling);
* two processes incrementing shared counters at once: shmkit's atomic add
  against multiprocessing.Array under its lock.

Every figure is the median of REPEATS runs; ratios are against the
multiprocessing peer.  Results go to bench-results/bench_bitset_array.json.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid

import shmkit

REPEATS = 5
N = 200_000
MASK = (1 << 16) - 1


def timed(fn, n: int) -> float:
    runs = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(n)
        runs.append(n / (time.perf_counter() - t0))
    return statistics.median(runs)


# ------------------------------------------------------------- one process

def single_process(name: str) -> dict:
    bits = shmkit.Bitset(name + "-b", MASK + 1, create=True)
    arr = shmkit.Array(name + "-a", "int64", MASK + 1, create=True)
    mpa = mp.Array("q", MASK + 1)                      # synchronized wrapper
    mpa_raw = mp.Array("q", MASK + 1, lock=False)
    mpb = mp.Array("B", MASK + 1)
    ba = bytearray(MASK + 1)
    lst = [0] * (MASK + 1)

    def bits_set(n, s=bits.set):
        for i in range(n):
            s(i & MASK)

    def bits_test(n, t=bits.test):
        for i in range(n):
            t(i & MASK)

    def bits_getitem(n, b=bits):
        for i in range(n):
            b[i & MASK]

    def mp_bytes_set_locked(n, a=mpb, lock=mpb.get_lock()):
        for i in range(n):
            with lock:
                a[i & MASK] = 1

    def bytearray_set(n, a=ba):
        for i in range(n):
            a[i & MASK] = 1

    def arr_add(n, add=arr.add):
        for i in range(n):
            add(i & MASK, 1)

    def arr_get(n, a=arr):
        for i in range(n):
            a[i & MASK]

    def arr_set(n, a=arr):
        for i in range(n):
            a[i & MASK] = i

    def arr_cas(n, cas=arr.compare_and_swap):
        for i in range(n):
            cas(i & MASK, 0, 0)

    def mp_add_locked(n, a=mpa, lock=mpa.get_lock()):
        for i in range(n):
            with lock:
                a[i & MASK] += 1

    def mp_get(n, a=mpa_raw):
        for i in range(n):
            a[i & MASK]

    def mp_set(n, a=mpa_raw):
        for i in range(n):
            a[i & MASK] = i

    def list_add(n, a=lst):
        for i in range(n):
            a[i & MASK] += 1

    rows = {}
    for label, fn, peer in [
        ("Bitset.set(i)", bits_set, "mp.Array('B') set under lock"),
        ("Bitset.test(i)", bits_test, None),
        ("Bitset[i]", bits_getitem, None),
        ("mp.Array('B') set under lock", mp_bytes_set_locked, None),
        ("bytearray[i] = 1 (in-process ceiling)", bytearray_set, None),
        ("Array.add(i, 1)", arr_add, "mp.Array('q') += 1 under lock"),
        ("Array.compare_and_swap(i, 0, 0)", arr_cas, None),
        ("mp.Array('q') += 1 under lock", mp_add_locked, None),
        ("list[i] += 1 (in-process ceiling)", list_add, None),
        ("Array[i]", arr_get, "mp.Array('q', lock=False)[i]"),
        ("mp.Array('q', lock=False)[i]", mp_get, None),
        ("Array[i] = v", arr_set, "mp.Array('q', lock=False)[i] = v"),
        ("mp.Array('q', lock=False)[i] = v", mp_set, None),
    ]:
        rows[label] = {"ops_per_sec": timed(fn, N), "vs": peer}
    for r in rows.values():
        if r["vs"]:
            r["ratio_vs_peer"] = r["ops_per_sec"] / rows[r["vs"]]["ops_per_sec"]
    for x in (bits, arr):
        x.close()
        x.unlink()
    return rows


# ----------------------------------------------------------- two processes

def _shmkit_adder(name, n, start):
    arr = shmkit.Array(name)
    add = arr.add
    start.wait()
    for i in range(n):
        add(i & 7, 1)
    arr.close()


def _mp_adder(a, n, start):
    lock = a.get_lock()
    start.wait()
    for i in range(n):
        with lock:
            a[i & 7] += 1


def two_processes(name: str) -> dict:
    ctx = mp.get_context("fork")
    out = {}
    for label in ("shmkit Array.add", "mp.Array under lock"):
        runs = []
        for _ in range(REPEATS):
            start = ctx.Event()
            if label.startswith("shmkit"):
                arr = shmkit.Array(name + "-c", "int64", 8, create=True)
                procs = [ctx.Process(target=_shmkit_adder, args=(name + "-c", N, start))
                         for _ in range(2)]
            else:
                arr = ctx.Array("q", 8)
                procs = [ctx.Process(target=_mp_adder, args=(arr, N, start)) for _ in range(2)]
            for p in procs:
                p.start()
            time.sleep(0.2)                    # let both reach the start line
            t0 = time.perf_counter()
            start.set()
            for p in procs:
                p.join()
            dt = time.perf_counter() - t0
            total = sum(arr[:])
            assert total == 2 * N, (label, total)   # no lost update
            runs.append(2 * N / dt)
            if label.startswith("shmkit"):
                arr.close()
                arr.unlink()
        out[label] = {"ops_per_sec": statistics.median(runs)}
    out["shmkit Array.add"]["ratio_vs_peer"] = (
        out["shmkit Array.add"]["ops_per_sec"] / out["mp.Array under lock"]["ops_per_sec"])
    return out


def main() -> None:
    global N, REPEATS
    if "--quick" in sys.argv:
        N, REPEATS = 20_000, 3
    name = f"shmkit-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    single = single_process(name)
    print(f"{'one process':44s} {'ops/s':>12s}   ratio")
    for label, r in single.items():
        ratio = f"{r['ratio_vs_peer']:6.1f}x vs {r['vs']}" if "ratio_vs_peer" in r else ""
        print(f"{label:44s} {r['ops_per_sec']:12,.0f}   {ratio}")
    two = two_processes(name)
    print(f"\n{'two processes, shared counters':44s} {'ops/s':>12s}")
    for label, r in two.items():
        ratio = f"{r['ratio_vs_peer']:6.1f}x" if "ratio_vs_peer" in r else ""
        print(f"{label:44s} {r['ops_per_sec']:12,.0f}   {ratio}")
    os.makedirs("bench-results", exist_ok=True)
    result = {
        "benchmark": "bench_bitset_array (Python)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0], "shmkit": shmkit.__version__},
        "repeats": REPEATS, "ops_per_run": N,
        "one_process": single, "two_processes": two,
    }
    with open("bench-results/bench_bitset_array.json", "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

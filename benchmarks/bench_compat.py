"""Each shmkit.compat module against the package it replaces, driven by the
same code (the APIs are the same): ``python benchmarks/bench_compat.py``.

One process, 2,000 short-str keys (``"k00001"`` -> ``"value-000001"``) or
64-byte allocations; each figure is the best of 5 timed passes, in
operations per second.  A package that does not import is skipped with the
reason.  The peers install with ``make demo`` (requirements-bench.txt).
"""
from __future__ import annotations

import importlib
import os
import time
import uuid

N = 2000
REPEATS = 5
KEYS = [f"k{i:05d}" for i in range(N)]
VALUES = [f"value-{i:06d}" for i in range(N)]


def best_rate(fn, n=N):
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def dict_ops(d):
    def set_all():
        for k, v in zip(KEYS, VALUES):
            d[k] = v

    def get_all():
        for k in KEYS:
            d[k]

    set_all()
    return {"set (update)": best_rate(set_all), "get": best_rate(get_all)}


def name():
    return f"bench-compat-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def shared_hashmap(mod):
    m = mod.SharedHashMap(name(), capacity=4 * N, create=True)
    try:
        return dict_ops(m)
    finally:
        m.unlink()
        m.close()


def zero_copy_ipc(mod):
    d = mod.ZeroCopyDict.create(name(), max_items=4 * N, heap_size=64 << 20)
    try:
        return dict_ops(d)
    finally:
        d.close()


def sharedbox(mod):
    d = mod.SharedDict(name(), size=64 << 20, max_keys=4 * N)
    try:
        return dict_ops(d)
    finally:
        d.close()
        d.unlink()


def shared_allocator(mod):
    out = {}
    a = mod.FreeListAllocator(name(), capacity=16 << 20, create=True)
    try:
        def pairs():
            for _ in range(N):
                a.free(a.allocate(64))
        out["free-list allocate+free"] = best_rate(pairs)
    finally:
        a.close()
        a.unlink()
    b = mod.BumpAllocator(name(), capacity=16 << 20, create=True)
    try:
        def bumps():
            b.reset()
            for _ in range(N):
                b.allocate(64)
        out["bump allocate"] = best_rate(bumps)
    finally:
        b.close()
        b.unlink()
    return out


CASES = [("shared_hashmap", "shared-hashmap", shared_hashmap),
         ("zero_copy_ipc", "zero-copy-ipc", zero_copy_ipc),
         ("sharedbox", "sharedbox", sharedbox),
         ("shared_allocator", "shared-allocator", shared_allocator),
         ("posix_shm", "posix-shm", None)]


def main():
    print("| package | operation | original (ops/s) | shmkit.compat (ops/s) | × |")
    print("|---|---|---:|---:|---:|")
    for module, package, run in CASES:
        try:
            original = importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any import failure skips the peer
            print(f"| {package} | – | not installed ({type(e).__name__}) | – | – |")
            continue
        if run is None:
            continue
        ours = run(importlib.import_module(f"shmkit.compat.{module}"))
        theirs = run(original)
        for op, rate in ours.items():
            print(f"| {package} | {op} | {theirs[op]:,.0f} | {rate:,.0f} | "
                  f"{rate / theirs[op]:,.1f} |")


if __name__ == "__main__":
    main()

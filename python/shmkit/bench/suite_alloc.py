"""Allocator benchmarks: shmkit's FreeList / Bump / Slab allocators against the
``shared-allocator`` package (PyPI), whose API shmkit's allocators copy.

Operations (64-byte blocks, one process):
  * allocate+free pair      ``a.free(a.allocate(64))``           (free-list, slab)
  * allocate                 n allocations, then an untimed reset/free  (all)
  * write 64 B / read 64 B   ``a.write(off, data)`` / ``a.read(off, 64)``

Targets: free-list >= 3M pairs/s, bump >= 5M allocations/s
(shared-allocator publishes 1.2M and 2.9M).
"""
from __future__ import annotations

import time
from typing import Any, List, Tuple

from .harness import Case, Fixture, Skip, shm_name

CAPACITY = 16 << 20
BLOCK = 64
# allocations per timed chunk of the "allocate" case: must fit the capacity
# even with the peers' per-slot overhead (shared-allocator's free list has
# 256-byte slots by default).
ALLOC_CHUNK = 16384
DATA = b"x" * BLOCK


TARGETS = [
    {"label": "free-list allocate+free >= 3M pairs/s",
     "of": ("alloc-freelist", "allocate+free pair 64 B", "shmkit freelist"), "min": 3e6},
    {"label": "bump allocate >= 5M/s",
     "of": ("alloc-bump", "allocate 64 B", "shmkit bump"), "min": 5e6},
]


def _shmkit(kind: str):
    def make():
        import shmkit

        cls = {"freelist": shmkit.FreeListAllocator, "bump": shmkit.BumpAllocator,
               "slab": shmkit.SlabAllocator}[kind]
        name = shm_name("a")
        if kind == "slab":
            a = cls(name, CAPACITY, create=True, slab_size=BLOCK)
        else:
            a = cls(name, CAPACITY, create=True)

        def close():
            try:
                a.close()
            finally:
                shmkit.unlink(name)

        return Fixture(a, close)

    return make


def _peer(kind: str):
    def make():
        import shared_allocator as sa

        name = shm_name("p")
        if kind == "freelist":
            a = sa.FreeListAllocator(name=name, capacity=CAPACITY, slot_size=BLOCK, create=True)
        elif kind == "bump":
            a = sa.BumpAllocator(name=name, capacity=CAPACITY, create=True)
        else:
            a = sa.SlabAllocator(name=name, slab_size=BLOCK, num_slabs=CAPACITY // BLOCK,
                                 create=True)

        def close():
            try:
                a.close()
            finally:
                a.unlink()

        return Fixture(a, close)

    return make


def _pairs(fx, n):
    a = fx.obj
    alloc, free = a.allocate, a.free
    r = range(n)
    t = time.perf_counter()
    for _ in r:
        free(alloc(BLOCK))
    return time.perf_counter() - t


def _allocs(kind):
    def run(fx, n):
        a = fx.obj
        alloc = a.allocate
        total = 0.0
        while n > 0:
            k = min(n, ALLOC_CHUNK)
            r = range(k)
            t = time.perf_counter()
            offs = [alloc(BLOCK) for _ in r]
            total += time.perf_counter() - t
            if None in offs:  # shared-allocator returns None when full
                raise Skip("allocator full")
            if kind == "bump":
                a.reset()
            else:
                for off in offs:
                    a.free(off)
            n -= k
        return total
    return run


def _write(fx, n):
    a = fx.obj
    off = getattr(fx, "off", None)
    if off is None:
        off = fx.off = a.allocate(BLOCK)
    w = a.write
    r = range(n)
    t = time.perf_counter()
    for _ in r:
        w(off, DATA)
    return time.perf_counter() - t


def _read(fx, n):
    a = fx.obj
    off = getattr(fx, "off", None)
    if off is None:
        off = fx.off = a.allocate(BLOCK)
        a.write(off, DATA)
    rd = a.read
    r = range(n)
    t = time.perf_counter()
    for _ in r:
        rd(off, BLOCK)
    return time.perf_counter() - t


def cases(mode: str) -> List[Case]:
    impls: List[Tuple[str, str, Any, Tuple[str, ...], bool]] = []
    for kind in ("freelist", "bump", "slab"):
        impls.append((f"shmkit {kind}", kind, _shmkit(kind), (), True))
        impls.append((f"shared-allocator {kind}", kind, _peer(kind), ("shared_allocator",), False))
    ops = [
        ("allocate+free pair 64 B", _pairs, ("freelist", "slab")),
        ("allocate 64 B", None, ("freelist", "bump", "slab")),
        ("write 64 B", _write, ("freelist", "bump", "slab")),
        ("read 64 B", _read, ("freelist", "bump", "slab")),
    ]
    out = []
    # one chart per allocator kind: shmkit vs shared-allocator side by side
    for kind in ("freelist", "bump", "slab"):
        for op, fn, kinds in ops:
            if kind not in kinds:
                continue
            for label, k, make, req, base in impls:
                if k != kind:
                    continue
                out.append(Case(
                    suite="alloc", chart=f"alloc-{kind}", group=op, impl=label,
                    fixture=("alloc", label), make_fixture=make,
                    run=fn if fn is not None else _allocs(kind),
                    requires=req, baseline=base,
                ))
    return out

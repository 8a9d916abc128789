"""Dict benchmarks: ``shmkit.SharedDict`` against a plain ``dict`` (the
ceiling: no sharing at all), ``multiprocessing.Manager().dict()`` (the floor
users start from) and the PyPI packages shared-hashmap, zero-copy-ipc,
sharedbox (0.2.4, its SharedDict), UltraDict and shared-memory-dict.

Operations, each ``for k in keys: <op>`` in one Python loop, the same for
every implementation:
  * get        ``d[k]`` over a working set of existing keys
  * contains   ``k in d``
  * update     ``d[k] = v`` on existing keys
  * set        ``d[k] = v`` on new keys (removed again untimed)
  * delete     ``del d[k]`` (keys inserted untimed first)
Values: short str, int, 1 KB bytes, 1 MB numpy float64 array.
Processes: 1, and 2 at once (forked workers on disjoint keys for writes, the
shared working set for reads; the figure is the sum of both rates).

The peers have fixed capacities (buckets, max value size, heap size); each is
sized for the working set plus one chunk of new keys, generously, so that
no peer is measured while full.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import time
from typing import Any, Callable, Dict, List, Tuple

from .harness import (Case, Fixture, Skip, close_then_unlink, fork_workers, shm_name,
                      unlink_then_close)

# working-set keys for get/contains/update, and new keys per timed chunk of
# set/delete, per value kind (1 MB values need small sets).
WORKING = {"str": 512, "int": 512, "1KB bytes": 256, "1MB numpy": 8}
CHUNK = {"str": 1024, "int": 1024, "1KB bytes": 512, "1MB numpy": 8}
# Multi-process cases run each worker this many times the mode's budget:
# forking costs little next to it, and the scaling ratio needs steady rates.
SCALING_BUDGET = 10.0
# ... and the two sides of the scaling ratio take the median of this many.
SCALING_REPEATS = 7
VALUE_BYTES = {"str": 32, "int": 16, "1KB bytes": 1024, "1MB numpy": 1 << 20}


def make_value(kind: str, i: int = 0) -> Any:
    if kind == "str":
        return f"value-{i:06d}"
    if kind == "int":
        return 1_000_000 + i
    if kind == "1KB bytes":
        return bytes([i % 256]) * 1024
    if kind == "1MB numpy":
        import numpy as np

        return np.full(1 << 17, float(i), dtype=np.float64)  # 1 MiB
    raise ValueError(kind)


def key(i: int, prefix: str = "k") -> str:
    return f"{prefix}{i:08d}"


_key_cache: Dict[Tuple, List[str]] = {}


def cycled_keys(nkeys: int, n: int) -> List[str]:
    """n keys cycling over the working set (cached: building them is not
    part of what is measured, but it costs wall time)."""
    ck = (nkeys, n)
    ks = _key_cache.get(ck)
    if ks is None:
        base = [key(i) for i in range(nkeys)]
        ks = (base * (n // nkeys + 1))[:n]
        if len(_key_cache) > 64:
            _key_cache.clear()
        _key_cache[ck] = ks
    return ks


# The mixed workload of the 2-process chart: 9 gets, then 1 update.
MIXED = "9 gets : 1 update"
# The scaling baseline: the same worker code, forked the same way, alone.
ONE_WORKER = "shmkit, 1 process"

TARGETS = [
    {"label": "dict get, short str, 1 process >= 5M/s",
     "of": ("dict-str-1proc", "get", "shmkit"), "min": 5e6},
    {"label": "dict set, short str, 1 process >= 3M/s",
     "of": ("dict-str-1proc", "set", "shmkit"), "min": 3e6},
    {"label": "dict get within 3x of a plain dict",
     "of": ("dict-str-1proc", "get", "shmkit"),
     "over": ("dict-str-1proc", "get", "dict (no sharing)"), "factor": 1 / 3},
] + [
    # Scaling compares like with like: the same worker, forked the same way,
    # run alone (ONE_WORKER) and two at once.
    {"label": f"dict {op}, 2 processes >= 1.6x one process",
     "of": ("dict-str-2proc", op, "shmkit"),
     "over": ("dict-str-2proc", op, ONE_WORKER), "factor": 1.6}
    for op in ("get", MIXED, "set")
]

# ------------------------------------------------------------------ adapters
# Each returns (store, close, attach): attach() gives a store usable in a
# forked child (a fresh handle by name where the implementation needs one).


def _plain(kind):
    d: Dict = {}
    return d, lambda: None, None


def _shmkit(kind):
    import shmkit

    name = shm_name("d")
    d = shmkit.SharedDict(name, create=True)
    return d, close_then_unlink(d, name), lambda: shmkit.SharedDict(name, create=False)


def _manager(kind):
    ctx = mp.get_context("fork")
    m = ctx.Manager()
    d = m.dict()
    return d, m.shutdown, None  # the proxy reconnects after fork by itself


def _shared_hashmap(kind):
    from shared_hashmap import SharedHashMap

    n = WORKING[kind] + 2 * CHUNK[kind] + 16
    # pickled numpy array: 1 MiB of data + header
    vmax = VALUE_BYTES[kind] + 512
    name = shm_name("h")
    d = SharedHashMap(name=name, capacity=4 * n, max_key_size=32, max_value_size=vmax,
                      create=True)

    def close():
        try:
            d.close()
        finally:
            d.unlink()

    def attach():
        return SharedHashMap(name=name, create=False)

    return d, close, attach


def _zero_copy(kind):
    from zero_copy_ipc import ZeroCopyDict

    n = WORKING[kind] + 2 * CHUNK[kind] + 16
    heap = max(16 << 20, 4 * n * (VALUE_BYTES[kind] + 256))
    name = shm_name("z")
    d = ZeroCopyDict.create(name, max_items=4 * n, heap_size=heap)
    return d, d.close, lambda: ZeroCopyDict.attach(name)  # creator's close unlinks


def _sharedbox(kind):
    import sharedbox

    cls = getattr(sharedbox, "SharedDict", None)
    if cls is None:
        raise Skip("this sharedbox release has no SharedDict (0.3+ replaced it; "
                   "requirements-bench.txt pins sharedbox==0.2.4)")
    n = WORKING[kind] + 2 * CHUNK[kind] + 16
    size = max(32 << 20, 3 * n * (VALUE_BYTES[kind] + 256))
    name = shm_name("b")
    d = cls(name, size=size, create=True, max_keys=4 * n)

    def close():
        try:
            d.close()
        finally:
            d.unlink()

    return d, close, lambda: cls(name, create=False)


def _ultradict(kind):
    from UltraDict import UltraDict

    n = WORKING[kind] + 2 * CHUNK[kind] + 16
    # UltraDict streams every change through a buffer and dumps the whole
    # dict when it overflows: give both room for the working set.
    full = max(4 << 20, 3 * n * (VALUE_BYTES[kind] + 128))
    name = shm_name("u")
    d = UltraDict(name=name, create=True, buffer_size=max(1 << 20, 8 * VALUE_BYTES[kind]),
                  full_dump_size=full, shared_lock=True, auto_unlink=False)

    return d, unlink_then_close(d), lambda: UltraDict(name=name, create=False,
                                                      shared_lock=True, auto_unlink=False)


def _shared_memory_dict(kind):
    from shared_memory_dict import SharedMemoryDict

    n = WORKING[kind] + 2 * CHUNK[kind] + 16
    size = max(1 << 20, 2 * n * (VALUE_BYTES[kind] + 64))
    name = shm_name("s")
    d = SharedMemoryDict(name=name, size=size)

    def close():
        try:
            d.shm.close()
        finally:
            d.shm.unlink()

    return d, close, lambda: SharedMemoryDict(name=name, size=size)


# label, adapter, required imports, is baseline, supports 2 processes
IMPLS: List[Tuple[str, Callable, Tuple[str, ...], bool, bool]] = [
    ("shmkit", _shmkit, (), True, True),
    ("dict (no sharing)", _plain, (), False, False),
    ("Manager().dict()", _manager, (), False, True),
    ("shared-hashmap", _shared_hashmap, ("shared_hashmap",), False, True),
    ("zero-copy-ipc", _zero_copy, ("zero_copy_ipc",), False, True),
    ("sharedbox", _sharedbox, ("sharedbox",), False, True),
    ("UltraDict", _ultradict, ("UltraDict",), False, True),
    ("shared-memory-dict", _shared_memory_dict, ("shared_memory_dict",), False, True),
]


class DictFixture(Fixture):
    def __init__(self, adapter, kind):
        store, close, attach = adapter(kind)
        super().__init__(store, close)
        self.kind = kind
        self.attach = attach
        self.value = make_value(kind, 1)
        self.nwork = WORKING[kind]
        self.baseline_runs: Dict[str, List[float]] = {}   # see _scaling_pair
        try:
            for i in range(self.nwork):
                store[key(i)] = make_value(kind, i)
        except BaseException:
            self.close()
            raise


# ------------------------------------------------------------------ operations
# op(store, keys, value) -> elapsed seconds for len(keys) operations.  Read
# ops run on the working set; set/delete get fresh keys.


def _op_get(d, ks, v):
    t = time.perf_counter()
    for k in ks:
        d[k]
    return time.perf_counter() - t


def _op_contains(d, ks, v):
    t = time.perf_counter()
    for k in ks:
        k in d  # noqa: B015 - the operation timed
    return time.perf_counter() - t


def _op_update(d, ks, v):
    t = time.perf_counter()
    for k in ks:
        d[k] = v
    return time.perf_counter() - t


class LostKey(Exception):
    """A key this process had just written was not there: the
    implementation lost an update (seen with some peers, under concurrent
    writers or even alone)."""


def _op_set(d, ks, v):
    t = time.perf_counter()
    for k in ks:
        d[k] = v
    elapsed = time.perf_counter() - t
    try:
        for k in ks:
            del d[k]
    except KeyError as e:
        raise LostKey(f"lost update: key {e} just written is missing") from None
    return elapsed


def _op_delete(d, ks, v):
    for k in ks:
        d[k] = v
    t = time.perf_counter()
    try:
        for k in ks:
            del d[k]
    except KeyError as e:
        raise LostKey(f"lost update: key {e} just written is missing") from None
    return time.perf_counter() - t


def _op_get_view(d, ks, v):
    gv = d.get_view
    t = time.perf_counter()
    for k in ks:
        gv(k)  # the view is dropped at once, which unpins the entry
    return time.perf_counter() - t


def _op_mixed(d, ks, v):
    """What most users do: mostly reads, some writes (to keys this worker
    owns, so writers do not collide)."""
    n = len(ks)
    t = time.perf_counter()
    for i in range(n):
        if i % 10:
            d[ks[i]]
        else:
            d[ks[i]] = v
    return time.perf_counter() - t


OPS = {"get": _op_get, "contains": _op_contains, "update": _op_update, MIXED: _op_mixed,
       "set": _op_set, "delete": _op_delete, "get_view": _op_get_view}
# get_view (zero-copy, shmkit only) is a row of the "get" group
STANDARD_OPS = ["get", "contains", "update", "set", "delete"]
FRESH = {"set", "delete"}


def fresh_keys(n: int, prefix: str = "n") -> List[str]:
    """n keys outside the working set (cached like cycled_keys)."""
    ck = (prefix, n)
    ks = _key_cache.get(ck)
    if ks is None:
        ks = _key_cache[ck] = [key(i, prefix) for i in range(n)]
    return ks


def _keys_for(op: str, fx: DictFixture, n: int) -> List[str]:
    return fresh_keys(n) if op in FRESH else cycled_keys(fx.nwork, n)


def _one_process(op):
    fn = OPS[op]

    def run(fx: DictFixture, n: int) -> float:
        total = 0.0
        chunk = CHUNK[fx.kind] if op in FRESH else n
        done = 0
        while done < n:
            k = min(chunk, n - done)
            total += fn(fx.obj, _keys_for(op, fx, k), fx.value)
            done += k
        return total

    return run


def _worker(fx: DictFixture, op: str, wid: int):
    def target(budget, conn, go):
        d = fx.attach() if fx.attach is not None else fx.obj
        fn = OPS[op]
        chunk = CHUNK[fx.kind] if op in FRESH else 256
        if op in FRESH:
            ks = fresh_keys(chunk, f"w{wid}n")
        elif op in ("update", MIXED):
            # disjoint halves of the working set: writers do not collide
            ks = cycled_keys(fx.nwork, chunk)[wid::2]
        else:
            ks = cycled_keys(fx.nwork, chunk)
        conn.send("ready")
        go.wait()
        ops, elapsed = 0, 0.0
        while elapsed < budget:
            elapsed += fn(d, ks, fx.value)
            ops += len(ks)
        conn.send((ops, elapsed))
    return target


def _processes(op, n):
    def rate(fx: DictFixture, budget: float):
        # aggregate: the sum of the workers' rates while all run
        res = fork_workers([_worker(fx, op, w) for w in range(n)], budget)
        return sum(ops / t for ops, t in res), 1.0
    return rate


def _scaling_pair(op):
    """The rates of shmkit's 2-process case and of its 1-process baseline
    (ONE_WORKER), measured in alternation: each repeat of the 2-process case
    first runs the same worker alone.  This VM drifts by tens of percent
    within a minute; measured minutes apart, the two medians moved apart
    with it and their ratio (the scaling target) swung from 1.2x to 1.9x
    between runs.  Paired, the drift hits both alike.  The baseline case
    then reports the runs made here (or measures anew if there are none)."""
    two, one = _processes(op, 2), _processes(op, 1)

    def rate_two(fx: DictFixture, budget: float):
        fx.baseline_runs.setdefault(op, []).append(one(fx, budget)[0])
        return two(fx, budget)

    def rate_one(fx: DictFixture, budget: float):
        runs = fx.baseline_runs.get(op)
        return (runs.pop(0), 1.0) if runs else one(fx, budget)

    return rate_two, rate_one


def cases(mode: str) -> List[Case]:
    if mode == "full":
        kinds = ["str", "int", "1KB bytes", "1MB numpy"]
        ops = {k: list(STANDARD_OPS) for k in kinds}
        ops2 = {k: list(STANDARD_OPS) + [MIXED] for k in kinds}
    elif mode == "quick":
        kinds = ["str", "int", "1KB bytes", "1MB numpy"]
        ops = {"str": list(STANDARD_OPS), "int": ["get", "set"], "1KB bytes": ["get", "set"],
               "1MB numpy": ["get", "update"]}
        ops2 = {"str": ["get", "set", MIXED]}
    else:  # tiny
        kinds = ["str", "int"]
        ops = {"str": list(STANDARD_OPS), "int": ["get"]}
        ops2 = {"str": ["get", "set"]}
    out: List[Case] = []
    for kind in kinds:
        req_np = ("numpy",) if "numpy" in kind else ()
        for procs, table in ((1, ops), (2, ops2)):
            if kind not in table:
                continue
            chart = f"dict-{kind.replace(' ', '-')}-{procs}proc"
            for op in table[kind]:
                for label, adapter, req, base, multi in IMPLS:
                    if procs == 2 and not multi:
                        continue
                    fkey = ("dict", label, kind)
                    paired = procs == 2 and label == "shmkit"
                    rate_two, rate_one = _scaling_pair(op) if paired else (_processes(op, 2), None)
                    out.append(Case(
                        suite="dict", chart=chart,
                        group=f"{op}",
                        impl=label,
                        fixture=fkey,
                        make_fixture=functools.partial(DictFixture, adapter, kind),
                        run=_one_process(op) if procs == 1 else None,
                        rate=rate_two if procs == 2 else None,
                        requires=req + req_np, baseline=base,
                        budget_scale=1.0 if procs == 1 else SCALING_BUDGET,
                        min_repeats=SCALING_REPEATS if paired else 0,
                    ))
                    if paired:
                        out.append(Case(
                            suite="dict", chart=chart, group=f"{op}", impl=ONE_WORKER,
                            fixture=fkey,
                            make_fixture=functools.partial(DictFixture, adapter, kind),
                            rate=rate_one, requires=req + req_np,
                            budget_scale=SCALING_BUDGET, min_repeats=SCALING_REPEATS,
                        ))
                if op == "get" and procs == 1 and "numpy" in kind:
                    # the zero-copy read: O(1) whatever the array size
                    out.append(Case(
                        suite="dict", chart=chart, group="get", impl="shmkit get_view (zero-copy)",
                        fixture=("dict", "shmkit", kind),
                        make_fixture=functools.partial(DictFixture, _shmkit, kind),
                        run=_one_process("get_view"), requires=req_np,
                    ))
    # keep each fixture's cases together so it is set up once
    order = {c.fixture: i for i, c in reversed(list(enumerate(out)))}
    out.sort(key=lambda c: (order[c.fixture]))
    return out

"""Runs a workload on a real shmkit structure from many processes at once and
checks the merged history.

The parent creates one fresh structure per *round* (alternating hot and
spread keys) and starts the worker processes once, for all rounds (fork or
spawn).  In each round the workers meet at a barrier, then each runs its
workload (lincheck_models.WORKLOADS), timing every operation with
``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for all processes) just
before the call and just after the return.  Each worker writes its records
to a file; the parent merges them per round (with what it stored before the
workers started, recorded the same way) and checks the round's history
against the model.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import random
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List, Sequence

import shmkit
from lincheck_core import DEFAULT_BUDGET, CheckResult, Op, Raised, check
from lincheck_models import MODELS, WORKLOADS, keys_for

STRUCTURES = ["dict", "queue", "stack", "bitset", "array", "freelist", "slab"]

BITSET_BITS = ARRAY_LENGTH = 4096
FREELIST_CAPACITY = 1 << 20
SLAB_SIZE = 64
SLAB_CAPACITY = SLAB_SIZE * 4096


def create(structure: str, name: str):
    if structure == "dict":
        return shmkit.SharedDict(name, create=True)
    if structure == "queue":
        return shmkit.Queue(name, create=True)
    if structure == "stack":
        return shmkit.Stack(name, create=True)
    if structure == "bitset":
        return shmkit.Bitset(name, BITSET_BITS, create=True)
    if structure == "array":
        return shmkit.Array(name, "int64", ARRAY_LENGTH, create=True)
    if structure == "freelist":
        return shmkit.FreeListAllocator(name, capacity=FREELIST_CAPACITY, create=True)
    if structure == "slab":
        return shmkit.SlabAllocator(name, capacity=SLAB_CAPACITY, create=True,
                                    slab_size=SLAB_SIZE)
    raise ValueError(structure)


_CLASSES = {"dict": "SharedDict", "queue": "Queue", "stack": "Stack", "bitset": "Bitset",
            "array": "Array", "freelist": "FreeListAllocator", "slab": "SlabAllocator"}


def attach(structure: str, name: str):
    return getattr(shmkit, _CLASSES[structure])(name, create=False)


def _setitem(o, k, v):
    o[k] = v


def _delitem(o, k):
    del o[k]


def _alloc_write(o, off, size, data):
    o.write(off, data)


# (structure, operation name) -> the call on the real object
EXECUTE: Dict[str, Dict[str, Callable[..., Any]]] = {
    "dict": {
        "get": lambda o, k: o.get(k),
        "getitem": lambda o, k: o[k],
        "contains": lambda o, k: k in o,
        "set": _setitem,
        "delete": _delitem,
        "incr": lambda o, k, d: o.incr(k, d),
        "compare_and_swap": lambda o, k, e, n: o.compare_and_swap(k, e, n),
        "setdefault": lambda o, k, v: o.setdefault(k, v),
        "pop": lambda o, *a: o.pop(*a),
    },
    "queue": {
        "put": lambda o, x: o.put_nowait(x),
        "get": lambda o: o.get_nowait(),
    },
    "stack": {
        "push": lambda o, x: o.push(x),
        "pop": lambda o: o.pop(),
        "peek": lambda o: o.peek(),
    },
    "bitset": {
        "set": lambda o, i: o.set(i),
        "clear": lambda o, i: o.clear(i),
        "flip": lambda o, i: o.flip(i),
        "test": lambda o, i: o.test(i),
        "assign": _setitem,
    },
    "array": {
        "add": lambda o, i, d: o.add(i, d),
        "exchange": lambda o, i, v: o.exchange(i, v),
        "compare_and_swap": lambda o, i, e, n: o.compare_and_swap(i, e, n),
        "get": lambda o, i: o[i],
        "set": _setitem,
    },
}
EXECUTE["freelist"] = {
    "allocate": lambda o, size: o.allocate(size),
    "write": _alloc_write,
    "read": lambda o, off, size: o.read(off, size),
    "free": lambda o, off, size: o.free(off),
}
EXECUTE["slab"] = dict(EXECUTE["freelist"], allocate=lambda o, size: o.allocate())


def _prefill(structure: str, obj, keys) -> list:
    """What the parent stores before the workers start, recorded like a
    worker's operations: the dict's stable keys (present from the start, so
    most reads are of present keys)."""
    recs = []
    if structure == "dict":
        for k in keys:
            if k.startswith("s"):
                t0 = time.monotonic_ns()
                obj[k] = 0
                recs.append(("set", (k, 0), None, t0, time.monotonic_ns()))
    return recs


def worker(structure: str, names: Sequence[str], hots: Sequence[bool], wid: int, nops: int,
           seed: int, out_path: str, barrier) -> None:
    """One process: every round's workload, records to ``out_path``."""
    table = EXECUTE[structure]
    now = time.monotonic_ns
    rounds: List[list] = []
    for r, name in enumerate(names):
        obj = attach(structure, name)
        # hot rounds are shorter: on a handful of keys, every process
        # preempted mid-operation at once makes the search much wider
        gen = WORKLOADS[structure](random.Random(f"{seed}/{r}/{wid}"), wid,
                                   max(20, nops // 3) if hots[r] else nops,
                                   keys_for(structure, hots[r]))
        recs: list = []
        barrier.wait(300)
        req = next(gen, None)
        while req is not None:
            op, args = req
            fn = table[op]
            t0 = now()
            try:
                res = fn(obj, *args)
            except Exception as e:       # recorded: the model decides if it was allowed
                res = Raised(type(e).__name__)
            t1 = now()
            recs.append((op, args, res, t0, t1))
            try:
                req = gen.send(res)
            except StopIteration:
                req = None
        obj.close()
        rounds.append(recs)
    with open(out_path + ".tmp", "wb") as f:
        pickle.dump(rounds, f)
    os.rename(out_path + ".tmp", out_path)


@dataclasses.dataclass
class RunReport:
    structure: str
    method: str
    nprocs: int
    rounds: List[CheckResult]
    seconds: float
    check_seconds: float
    first_failure: str = ""

    @property
    def failed(self) -> int:
        return sum(r.status == "fail" for r in self.rounds)

    @property
    def unknown(self) -> int:
        return sum(r.status == "unknown" for r in self.rounds)

    def summary(self, label: str) -> str:
        ops = sum(r.ops for r in self.rounds)
        return (f"{label:<12} {self.structure:<8} {self.method:<5} procs={self.nprocs} "
                f"histories={len(self.rounds)} ops={ops} "
                f"partitions={sum(r.partitions for r in self.rounds)} "
                f"overlapping={sum(r.overlapping for r in self.rounds)} "
                f"steps={sum(r.steps for r in self.rounds)} "
                f"failed={self.failed} unknown={self.unknown} time={self.seconds:.1f}s "
                f"(checking {self.check_seconds:.1f}s)")


def run(structure: str, method: str, *, nprocs: int, rounds: int, nops: int, seed: int,
        budget: int = DEFAULT_BUDGET) -> RunReport:
    """``rounds`` histories of ``nprocs`` processes x ``nops`` operations
    each (a third of that with hot keys) on ``structure``, checked; rounds
    alternate hot and spread keys."""
    import multiprocessing

    ctx = multiprocessing.get_context(method)
    t_start = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    names = [f"shmkit-lincheck-{os.getpid()}-{structure}-{tag}-{r}" for r in range(rounds)]
    hots = [r % 2 == 0 for r in range(rounds)]
    made = []
    prefill: List[list] = []
    try:
        for r, name in enumerate(names):
            made.append(name)
            obj = create(structure, name)
            prefill.append(_prefill(structure, obj, keys_for(structure, hots[r])))
            obj.close()
        with tempfile.TemporaryDirectory(prefix="shmkit-lincheck-") as tmp:
            barrier = ctx.Barrier(nprocs)
            outs = [os.path.join(tmp, f"w{w}.pkl") for w in range(nprocs)]
            procs = [ctx.Process(target=worker,
                                 args=(structure, names, hots, w, nops, seed, outs[w], barrier))
                     for w in range(nprocs)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(600)
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
            codes = [p.exitcode for p in procs]
            if codes != [0] * nprocs:
                raise AssertionError(f"{structure}/{method}: worker exit codes {codes}")
            per_worker = []
            for path in outs:
                with open(path, "rb") as f:
                    per_worker.append(pickle.load(f))
    finally:
        for name in made:
            try:
                shmkit.unlink(name)
            except FileNotFoundError:
                pass
    model = MODELS[structure]
    t_check = time.monotonic()
    results = []
    first_failure = ""
    for r in range(rounds):
        history = [Op(w, *rec) for w, recs in enumerate(per_worker) for rec in recs[r]]
        history += [Op(nprocs, *rec) for rec in prefill[r]]
        res = check(model, history, budget)
        if res.status != "ok" and not first_failure:
            first_failure = (f"round {r} ({'hot' if hots[r] else 'spread'} keys, "
                             f"seed {seed}): {res}")
        results.append(res)
    done = time.monotonic()
    return RunReport(structure, method, nprocs, results, done - t_start, done - t_check,
                     first_failure)

"""Torture of SharedDict: each worker sets, overwrites, deletes, pops and
increments keys of its own half (victim and bystander never share a key),
with values of varied sizes; the churn of deletes rebuilds the table every
so often (tombstones count toward the load), so kills also land in resizes.  After each kill the last
committed state of every key must hold, except that the one operation a
killed worker had in flight may or may not have happened.  The model maps
each key ever written to the values it may have now (ABSENT included)."""
import random

import shmkit

from harness import Batch, Log, Scenario

ABSENT = "<absent>"


def setup(name: str) -> None:
    shmkit.SharedDict(name, create=True).close()


def _value(rng: random.Random, i: int):
    kind = rng.randrange(4)
    if kind == 0:
        return i
    if kind == 1:
        return "v" * rng.randrange(0, 3000)
    if kind == 2:
        return ["list", i]          # pickled
    return f"s{i}"


def work(name: str, log: Log, rng: random.Random) -> None:
    d = shmkit.SharedDict(name, create=False)
    w = log.worker
    counter = f"c{w}"
    count = 0
    i = 0
    while True:
        i += 1
        r = rng.random()
        key = f"h{w % 2}-{rng.randrange(3000)}"   # victim and bystander differ in parity
        if r < 0.55:
            v = _value(rng, i)
            log.intent([key, v])
            d[key] = v
            log.commit([key, v])
        elif r < 0.75:
            log.intent([key, ABSENT])
            d.pop(key, None)
            log.commit([key, ABSENT])
        elif r < 0.85:
            log.intent([key, ABSENT])
            try:
                del d[key]
            except KeyError:
                pass
            log.commit([key, ABSENT])
        else:
            count += 1
            log.intent([counter, count])
            assert d.incr(counter) == count
            log.commit([counter, count])


def model() -> dict:
    return {}           # key -> values it may have; a key not in it must be absent


def fold(expect: dict, batch: Batch) -> dict:
    # In record order: the workers of a cycle touch disjoint keys, and a
    # worker's in-flight intent is its last record, so it widens what the
    # key may be and nothing of that worker can narrow it again.
    for _w, _s, kind, (key, value) in batch.entries:
        if kind == "commit":
            expect[key] = [value]
        else:
            expect[key] = expect.get(key, [ABSENT]) + [value]
    return expect


def verify(name: str, expect: dict) -> dict:
    d = shmkit.SharedDict(name, create=False)
    st = d.check()
    must, may = 0, 0
    for key, allowed in expect.items():
        got = d.get(key, ABSENT)
        assert got in allowed, (key, got, allowed)
        if ABSENT not in allowed:
            must += 1
        if any(a != ABSENT for a in allowed):
            may += 1
    assert must <= len(d) <= may, (must, len(d), may)
    for key in d:
        assert key in expect, key
    d.close()
    return {"keys_checked": len(expect), "entries": st["entries"],
            "resizes": st["resizes"], "recoveries": st["recoveries"]}


SCENARIO = Scenario(
    "dict", setup, work, model, fold, verify,
    crash_points=("dict.set.intent", "dict.set.versioned", "dict.set.claimed",
                  "dict.set.published", "dict.set.retired", "dict.delete.unlinked",
                  "dict.delete.retired",
                  "dict.resize.copying", "dict.resize.built", "dict.resize.published",
                  "freelist.pop", "freelist.free", "freelist.carve"),
)

"""Torture of Counter: adds from workers that are killed at random instants
(and at the claim of a cell, and right after an add).  Every committed add
must be counted and the one in flight at most once; cells of killed workers
are reclaimed by later ones with their values kept.  The model is the
committed adds (the least the value can be) and the adds in flight when
their process died (each may or may not have landed)."""
import random

import shmkit

from harness import Batch, Log, Scenario

CELLS = 4      # fewer cells than the run's workers: claims reclaim dead owners


def setup(name: str) -> None:
    shmkit.Counter(name, create=True, cells=CELLS).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    c = shmkit.Counter(name)
    while True:
        n = rng.randrange(1, 100)
        log.intent(n)
        c.add(n)
        log.commit(n)


def model() -> dict:
    return {"committed": 0, "in_flight": 0}


def fold(m: dict, batch: Batch) -> dict:
    m["committed"] += sum(batch.committed())
    m["in_flight"] += sum(n for _worker, n in batch.in_flight())
    return m


def verify(name: str, m: dict) -> dict:
    c = shmkit.Counter(name)
    st = c.check()
    v = c.value
    # every committed add is there; one in flight when its process died may
    # or may not be (the adds are all positive, so the bounds are tight)
    assert m["committed"] <= v <= m["committed"] + m["in_flight"], (m, v)
    c.close()
    return {"adds_committed": m["committed"], "cells_claimed": st["cells_claimed"]}


SCENARIO = Scenario("counter", setup, work, model, fold, verify,
                    crash_points=("counter.claimed", "counter.add"))

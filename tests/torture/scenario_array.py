"""Torture of Array: atomic adds on shared counters; every committed add
must be counted, the one in flight at most once.  The model is, per
element, the committed adds (the least the value can be) and the adds that
were in flight when their process died (each may or may not have landed)."""
import random

import shmkit

from harness import Batch, Log, Scenario

LENGTH = 64


def setup(name: str) -> None:
    shmkit.Array(name, "int64", LENGTH, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    arr = shmkit.Array(name)
    while True:
        i = rng.randrange(LENGTH)
        log.intent(i)
        arr.add(i, 1)
        log.commit(i)


def model() -> dict:
    return {"committed": [0] * LENGTH, "in_flight": [0] * LENGTH}


def fold(m: dict, batch: Batch) -> dict:
    for i in batch.committed():
        m["committed"][i] += 1
    for _worker, i in batch.in_flight():
        m["in_flight"][i] += 1
    return m


def verify(name: str, m: dict) -> dict:
    arr = shmkit.Array(name)
    arr.check()
    committed, in_flight = m["committed"], m["in_flight"]
    for i in range(LENGTH):
        # every committed add is there; an add that was in flight when its
        # process died may or may not be
        assert committed[i] <= arr[i] <= committed[i] + in_flight[i], \
            (i, committed[i], arr[i], in_flight[i])
    total = sum(arr)
    arr.close()
    return {"adds_committed": sum(committed), "adds_in_flight_applied": total - sum(committed)}


SCENARIO = Scenario("array", setup, work, model, fold, verify, crash_points=("array.add",))

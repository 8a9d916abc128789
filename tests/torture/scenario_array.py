"""Torture of Array: atomic adds on shared counters; every committed add
must be counted, the one in flight at most once."""
import random

import shmkit

from harness import Log, Records, Scenario

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


def verify(name: str, records: Records) -> dict:
    arr = shmkit.Array(name)
    arr.check()
    committed = [0] * LENGTH
    for i in records.committed():
        committed[i] += 1
    intents = [0] * LENGTH
    for i in records.by_kind("intent"):
        intents[i] += 1
    for i in range(LENGTH):
        # every committed add is there; an add that was in flight when its
        # process died may or may not be
        assert committed[i] <= arr[i] <= intents[i], (i, committed[i], arr[i], intents[i])
    total = sum(arr)
    arr.close()
    return {"adds_committed": sum(committed), "adds_in_flight_applied": total - sum(committed)}


SCENARIO = Scenario("array", setup, work, verify, crash_points=("array.add",))

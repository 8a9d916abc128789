"""Torture of Bitset: workers set and clear bits of their own half (victim
and bystander never share a bit); the last committed change of every bit
must hold unless a later change was in flight.  The model maps each bit to
the set of values it may have."""
import random

import shmkit

from harness import Batch, Log, Scenario

SIZE = 256


def setup(name: str) -> None:
    shmkit.Bitset(name, SIZE, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    bits = shmkit.Bitset(name)
    half = log.worker % 2
    while True:
        i = half * (SIZE // 2) + rng.randrange(SIZE // 2)
        value = rng.random() < 0.5
        log.intent([i, value])
        if value:
            bits.set(i)
        else:
            bits.clear(i)
        log.commit([i, value])


def model() -> dict:
    return {}           # bit -> allowed values; a bit not in it must be clear


def fold(expect: dict, batch: Batch) -> dict:
    # In record order: the workers of a cycle touch disjoint bits, and a
    # worker's in-flight intent is its last record, so it widens what the
    # bit may be and nothing of that worker can narrow it again.
    for _w, _s, kind, (i, value) in batch.entries:
        if kind == "commit":
            expect[i] = {value}
        else:
            expect[i] = expect.get(i, {False}) | {value}
    return expect


def verify(name: str, expect: dict) -> dict:
    bits = shmkit.Bitset(name)
    bits.check()
    for i in range(SIZE):
        assert bits.test(i) in expect.get(i, {False}), (i, expect.get(i, {False}))
    bits.close()
    return {"bits_checked": SIZE}


SCENARIO = Scenario("bitset", setup, work, model, fold, verify)

"""Torture of Bitset: workers set and clear bits of their own half (victim
and bystander never share a bit); the last committed change of every bit
must hold unless a later change was in flight."""
import random

import shmkit

from harness import Log, Records, Scenario

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


def verify(name: str, records: Records) -> dict:
    bits = shmkit.Bitset(name)
    bits.check()
    expect = {}
    for e in records.entries:       # in order: a dead worker's records end first
        i, value = e[3]
        if e[2] == "commit":
            expect[i] = {value}
        else:
            expect[i] = expect.get(i, {False}) | {value}
    for i, allowed in expect.items():
        assert bits.test(i) in allowed, (i, allowed)
    bits.close()
    return {"bits_checked": len(expect)}


SCENARIO = Scenario("bitset", setup, work, verify)

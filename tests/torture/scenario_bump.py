"""Torture of the bump allocator: blocks allocated and written with a
pattern (a bump allocator has no free); every committed block keeps its
contents and no two committed blocks overlap."""
import random
import time

import shmkit

from harness import KILLS, Log, Records, Scenario

MAX_BLOCKS, MAX_SIZE = 100, 200
CAPACITY = 2 * (KILLS + 1) * MAX_BLOCKS * (MAX_SIZE + 16) + (1 << 20)


def setup(name: str) -> None:
    shmkit.BumpAllocator(name, capacity=CAPACITY, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    a = shmkit.BumpAllocator(name)
    for _ in range(MAX_BLOCKS):       # bounded: the allocator never frees
        n = rng.randint(1, MAX_SIZE)
        off = a.allocate(n)
        fill = rng.randrange(256)
        a.write(off, bytes([fill]) * n)
        log.commit([off, n, fill])
    while True:
        time.sleep(1)                  # wait for the kill


def verify(name: str, records: Records) -> dict:
    a = shmkit.BumpAllocator(name)
    blocks = sorted(records.committed())
    for (o1, n1, _), (o2, _, _) in zip(blocks, blocks[1:]):
        assert o1 + n1 <= o2, f"blocks at {o1} and {o2} overlap"
    for off, n, fill in blocks:
        assert a.read(off, n) == bytes([fill]) * n, f"block {off} was overwritten"
    a.close()
    return {"blocks_checked": len(blocks)}


SCENARIO = Scenario("bump", setup, work, verify)

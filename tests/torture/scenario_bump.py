"""Torture of the bump allocator: blocks allocated and written with a
pattern (a bump allocator has no free); every committed block keeps its
contents and no two committed blocks overlap.  The model is every committed
block, sorted by offset."""
import bisect
import random
import time

import shmkit

from harness import KILLS, Batch, Log, Rotation, Scenario

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


def model() -> dict:
    return {"starts": [], "blocks": {}, "rotation": Rotation()}


def fold(m: dict, batch: Batch) -> dict:
    starts, blocks = m["starts"], m["blocks"]
    new = []
    for off, n, fill in sorted(batch.committed()):
        # bump offsets only grow, so this insert is (nearly) an append
        i = bisect.bisect_left(starts, off)
        if i > 0:
            prev = starts[i - 1]
            assert prev + blocks[prev][0] <= off, f"blocks at {prev} and {off} overlap"
        if i < len(starts):
            assert off + n <= starts[i], f"blocks at {off} and {starts[i]} overlap"
        starts.insert(i, off)
        blocks[off] = (n, fill)
        new.append(off)
    m["rotation"].advance(new, batch.final)
    return m


def verify(name: str, m: dict) -> dict:
    a = shmkit.BumpAllocator(name)
    blocks = m["blocks"]
    for off in m["rotation"].due:
        n, fill = blocks[off]
        assert a.read(off, n) == bytes([fill]) * n, f"block {off} was overwritten"
    a.close()
    return {"blocks": len(blocks), "blocks_checked": len(m["rotation"].due)}


SCENARIO = Scenario("bump", setup, work, model, fold, verify)

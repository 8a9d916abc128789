"""Torture of the slab allocator: slots claimed and written with a
pattern, some freed; a kill leaves every committed slot intact.  The model
is the free-list scenario's: the slots dead workers still hold."""
import random

import shmkit

from harness import KILLS, Batch, Log, Rotation, Scenario
from scenario_alloc import fold_blocks

SLOT, MAX_LIVE = 64, 40
CAPACITY = SLOT * (2 * (KILLS + 1) * MAX_LIVE + 1024)


def setup(name: str) -> None:
    shmkit.SlabAllocator(name, capacity=CAPACITY, slab_size=SLOT, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    a = shmkit.SlabAllocator(name)
    mine = []
    while True:
        if mine and (len(mine) >= MAX_LIVE or rng.random() < 0.4):
            off = mine.pop(rng.randrange(len(mine)))
            log.intent(["free", off])
            a.free(off)
        else:
            off = a.allocate()
            fill = rng.randrange(256)
            a.write(off, bytes([fill]) * SLOT)
            log.commit(["alloc", off, fill])
            mine.append(off)


def model() -> dict:
    return {"live": {}, "rotation": Rotation()}


def fold(m: dict, batch: Batch) -> dict:
    return fold_blocks(m, batch, lambda d: d[2])


def verify(name: str, m: dict) -> dict:
    a = shmkit.SlabAllocator(name)
    live = m["live"]
    for off in m["rotation"].due:
        assert a.read(off, SLOT) == bytes([live[off]]) * SLOT, f"slot {off} was overwritten"
    # still usable by a fresh process; a held slot is never handed out
    fresh = [a.allocate() for _ in range(16)]
    assert not set(fresh) & live.keys(), "a held slot was handed out"
    for o in fresh:
        a.free(o)
    a.close()
    return {"slots_held": len(live), "slots_checked": len(m["rotation"].due)}


SCENARIO = Scenario("slab", setup, work, model, fold, verify)

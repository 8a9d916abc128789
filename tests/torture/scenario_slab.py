"""Torture of the slab allocator: slots claimed and written with a
pattern, some freed; a kill leaves every committed slot intact."""
import random

import shmkit

from harness import KILLS, Log, Records, Scenario

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


def verify(name: str, records: Records) -> dict:
    a = shmkit.SlabAllocator(name)
    last = {}
    for e in records.entries:
        d = e[3]
        if e[2] == "commit" and d[0] == "alloc":
            last[d[1]] = d[2]
        elif e[2] == "intent" and d[0] == "free":
            last[d[1]] = None
    checked = 0
    for off, fill in last.items():
        if fill is None:
            continue
        assert a.read(off, SLOT) == bytes([fill]) * SLOT, f"slot {off} was overwritten"
        checked += 1
    # still usable by a fresh process; a committed slot is never handed out
    fresh = [a.allocate() for _ in range(16)]
    assert not set(fresh) & {o for o, f in last.items() if f is not None}
    for o in fresh:
        a.free(o)
    a.close()
    return {"slots_checked": checked}


SCENARIO = Scenario("slab", setup, work, verify)

"""Torture of the free-list allocator (and, through it, the segment heap and
growth): blocks allocated and written with a pattern, some freed."""
import random

import shmkit

from harness import KILLS, Log, Records, Scenario

# Blocks a killed worker held stay allocated (nobody else can know they are
# unused), so the capacity grows with the number of kills: at most
# MAX_LIVE blocks of MAX_SIZE bytes per worker, two workers per kill.
MAX_LIVE, MAX_SIZE = 40, 1000
CAPACITY = 2 * (KILLS + 1) * MAX_LIVE * (MAX_SIZE + 300) + (4 << 20)


def setup(name: str) -> None:
    shmkit.FreeListAllocator(name, capacity=CAPACITY, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    a = shmkit.FreeListAllocator(name)
    mine = []
    while True:
        if mine and (len(mine) >= MAX_LIVE or rng.random() < 0.4):
            off = mine.pop(rng.randrange(len(mine)))
            log.intent(["free", off])
            a.free(off)
        else:
            n = rng.randint(1, MAX_SIZE)
            try:
                off = a.allocate(n)
            except shmkit.OutOfMemoryError:
                continue
            fill = rng.randrange(256)
            a.write(off, bytes([fill]) * n)
            log.commit(["alloc", off, n, fill])
            mine.append(off)


def verify(name: str, records: Records) -> dict:
    a = shmkit.FreeListAllocator(name)
    # The last event about each offset decides what it must be now: a
    # committed allocation must still be live with its pattern; after a free
    # intent it may be free (or reused by anyone).
    last = {}
    for e in records.entries:
        d = e[3]
        if e[2] == "commit" and d[0] == "alloc":
            last[d[1]] = (d[2], d[3])
        elif e[2] == "intent" and d[0] == "free":
            last[d[1]] = None
    checked = 0
    for off, block in last.items():
        if block is None:
            continue
        n, fill = block
        assert a.usable_size(off) >= n, f"committed block {off} is no longer live"
        assert a.read(off, n) == bytes([fill]) * n, f"block {off} was overwritten"
        checked += 1
    stats = a.check()
    # the allocator still works for a fresh process
    offs = [a.allocate(64) for _ in range(100)]
    for o in offs:
        a.free(o)
    a.close()
    return {"blocks_checked": checked, "leaked": stats["leaked_blocks"],
            "abandoned": stats["abandoned_blocks"]}


SCENARIO = Scenario("freelist", setup, work, verify,
                    crash_points=("freelist.carve", "freelist.pop", "freelist.free",
                                  "segment.grow"))

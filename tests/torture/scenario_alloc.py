"""Torture of the free-list allocator (and, through it, the segment heap and
growth): blocks allocated and written with a pattern, some freed.

Only a block's owner frees it, so once a cycle's workers are dead the blocks
they held are permanent (nobody can know they are unused) and the model is
just those: offset -> (size, fill).  A committed allocation at the offset of
a permanent block, or two workers of a cycle both holding the same offset,
is a block handed out twice; a block whose free was in flight may be free
and leaves the model."""
import random

import shmkit

from harness import KILLS, Batch, Log, Rotation, Scenario

# Blocks a killed worker held stay allocated (nobody else can know they are
# unused), so the capacity grows with the number of kills: at most
# MAX_LIVE blocks of MAX_SIZE bytes per worker, two workers per kill.  At
# least 32 MiB, so that the workers have per-process caches (16 MiB and up):
# killed workers' caches are reclaimed in verify.
MAX_LIVE, MAX_SIZE = 40, 1000
CAPACITY = max(2 * (KILLS + 1) * MAX_LIVE * (MAX_SIZE + 300) + (4 << 20), 32 << 20)


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


def fold_blocks(m: dict, batch: Batch, block_of) -> dict:
    """Shared with the slab scenario: `block_of(data)` is what an "alloc"
    commit says the block holds."""
    held = {}                       # worker -> {offset: block} at its death
    for worker, _seq, kind, d in batch.entries:
        mine = held.setdefault(worker, {})
        if kind == "commit" and d[0] == "alloc":
            assert d[1] not in m["live"], \
                f"block {d[1]} handed out while a dead worker still holds it"
            mine[d[1]] = block_of(d)
        elif kind == "intent" and d[0] == "free":
            mine.pop(d[1], None)    # in flight or done: may be free now
    new = []
    for mine in held.values():
        for off, block in mine.items():
            assert off not in m["live"], f"block {off} held by two workers at once"
            m["live"][off] = block
            new.append(off)
    m["rotation"].advance(new, batch.final)
    return m


def model() -> dict:
    return {"live": {}, "rotation": Rotation()}


def fold(m: dict, batch: Batch) -> dict:
    return fold_blocks(m, batch, lambda d: (d[2], d[3]))


def verify(name: str, m: dict) -> dict:
    a = shmkit.FreeListAllocator(name)
    live = m["live"]
    for off in m["rotation"].due:
        n, fill = live[off]
        assert a.usable_size(off) >= n, f"committed block {off} is no longer live"
        assert a.read(off, n) == bytes([fill]) * n, f"block {off} was overwritten"
    # the caches of killed workers come back; blocks of this cycle's
    # (killed) workers' caches are counted as cached, never as leaked
    a.reclaim()
    stats = a.check()
    # the allocator still works for a fresh process, and never hands out a
    # block somebody holds
    offs = [a.allocate(64) for _ in range(100)]
    assert not set(offs) & live.keys(), "a held block was handed out"
    for o in offs:
        a.free(o)
    a.close()
    return {"blocks_held": len(live), "blocks_checked": len(m["rotation"].due),
            "leaked": stats["leaked_blocks"], "abandoned": stats["abandoned_blocks"],
            "cached": stats["cached_blocks"]}


SCENARIO = Scenario("freelist", setup, work, model, fold, verify,
                    crash_points=("freelist.carve", "freelist.pop", "freelist.free",
                                  "freelist.cache_alloc", "freelist.cache_free",
                                  "freelist.cache_flush", "freelist.refill",
                                  "segment.grow"))

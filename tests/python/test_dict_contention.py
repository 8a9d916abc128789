"""Every read of a SharedDict answers what is there, with 8 processes per
core: keys present throughout are never reported missing, and a hot
compare-and-set counter loses no increment.  (The C twin,
tests/c/test_dict_contention.c, runs 100,000 keys from C.)"""
import os
import random

import pytest

import shmkit

KEYS = 20_000


def _procs() -> int:
    return max(16, 8 * (os.cpu_count() or 2))


def _worker(name, seed, ops, out):
    d = shmkit.SharedDict(name)
    rng = random.Random(seed)
    misses = wrong = incrs = 0
    for n in range(ops):
        if n % 32 == 0:
            while True:       # the retry loop users write around compare_and_swap
                try:
                    v = d["cas"]
                except KeyError:
                    misses += 1
                    break
                if d.compare_and_swap("cas", v, v + 1):
                    incrs += 1
                    break
            continue
        i = rng.randrange(KEYS)
        k = f"k{i}"
        if rng.random() < 0.1:
            d[k] = (i, seed)
            continue
        try:
            if d[k][0] != i:
                wrong += 1
        except KeyError:
            misses += 1
    out.put((misses, wrong, incrs))


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_present_keys_never_missing(shm_name, start):
    import multiprocessing

    ctx = multiprocessing.get_context(start)
    d = shmkit.SharedDict(shm_name)
    d.update({f"k{i}": (i, -1) for i in range(KEYS)})
    d["cas"] = 0
    out = ctx.Queue()
    n = _procs()
    procs = [ctx.Process(target=_worker, args=(shm_name, s, 15000, out)) for s in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n
    misses = sum(r[0] for r in results)
    wrong = sum(r[1] for r in results)
    assert (misses, wrong) == (0, 0)
    assert d["cas"] == sum(r[2] for r in results)
    assert len(d) == KEYS + 1
    assert len(list(d.keys())) == KEYS + 1
    d.check()
    d.close()

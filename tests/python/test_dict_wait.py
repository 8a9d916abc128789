"""Tests of SharedDict change notification: watch(), wait(), wait_async(),
with writers in other processes (fork and spawn)."""
import asyncio
import multiprocessing as mp
import threading

import pytest

from shmkit import SharedDict

CONTEXTS = ["fork", "spawn"]
JOIN_TIMEOUT = 120


@pytest.fixture
def name(shm_name):
    return shm_name


def _writer(d, ready, keys):
    ready.wait(JOIN_TIMEOUT)
    for k in keys:
        d[k] = k


def _rewrite(d, key, stop):
    i = 0
    while not stop.is_set():
        d[key] = i
        i += 1
        stop.wait(0.01)


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_wait_for_changes_by_another_process(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    ready, stop = ctx.Event(), ctx.Event()
    with SharedDict(name, create=True) as d:
        p = ctx.Process(target=_writer, args=(d, ready, ["other", "also", "target"]))
        p.start()
        with d.watch() as w:
            ready.set()
            while d.get("target") is None:
                assert w.wait(timeout=JOIN_TIMEOUT)
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
        p = ctx.Process(target=_rewrite, args=(d, "again", stop))
        p.start()
        try:
            assert d.wait("again", timeout=JOIN_TIMEOUT) is True
        finally:
            stop.set()
            p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0


def _write_after(d, key, go):
    go.wait(JOIN_TIMEOUT)
    d[key] = 1
    del d[key]
    d.clear()


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_a_watch_misses_no_change(name, ctx_name):
    """Changes made between reads and waits are counted: set, delete and
    clear each move the version."""
    ctx = mp.get_context(ctx_name)
    go = ctx.Event()
    with SharedDict(name, create=True) as d:
        p = ctx.Process(target=_write_after, args=(d, "k", go))
        p.start()
        with d.watch() as w:
            v0 = w.version
            go.set()
            p.join(JOIN_TIMEOUT)                 # all three happened...
            assert w.wait(timeout=0) is True     # ...before this wait
            assert (w.version - v0) % 2**32 == 3
            assert w.wait(timeout=0.05) is False
        assert p.exitcode == 0


def test_key_wait_ignores_other_keys(name):
    with SharedDict(name, create=True) as d:
        d["k"] = 0
        result = []
        t = threading.Thread(target=lambda: result.append(d.wait("k", timeout=JOIN_TIMEOUT)))
        t.start()
        with d.watch() as w:
            d["other"] = 1
            w.wait(timeout=JOIN_TIMEOUT)
        assert not result                       # still waiting for "k"
        del d["k"]                             # a delete is a change
        t.join(JOIN_TIMEOUT)
        assert result == [True]


def test_timeouts_and_no_cost_unwatched(name):
    with SharedDict(name, create=True) as d:
        assert d.wait(timeout=0.05) is False
        assert d.wait("k", timeout=0) is False
        with d.watch() as w:
            v = w.version
        d["x"] = 1                              # nobody watches: not counted
        with d.watch() as w:
            assert w.version == v
            assert not w.changed()


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_wait_async_many_coroutines_one_thread(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    ready = ctx.Event()
    with SharedDict(name, create=True) as d:
        p = ctx.Process(target=_writer, args=(d, ready, [f"k{i}" for i in range(20)]))
        p.start()

        async def main():
            before = threading.active_count()
            tasks = [asyncio.create_task(d.wait_async(f"k{i}", timeout=JOIN_TIMEOUT))
                     for i in range(20)]
            for _ in range(5):
                await asyncio.sleep(0)
            assert threading.active_count() <= before + 1
            ready.set()
            return await asyncio.gather(*tasks)

        assert asyncio.run(main()) == [True] * 20
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0


def test_wait_async_cancel_and_timeout(name):
    with SharedDict(name, create=True) as d:
        async def main():
            t = asyncio.create_task(d.wait_async())
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert await d.wait_async("k", timeout=0.05) is False
            t = asyncio.create_task(d.wait_async("k"))
            await asyncio.sleep(0.01)
            d["k"] = 1
            return await t

        assert asyncio.run(main()) is True
        # every watch was withdrawn: unwatched writes are not counted
        with d.watch() as w:
            v = w.version
        d["y"] = 2
        with d.watch() as w:
            assert w.version == v

"""Tests of the asyncio face of shmkit.Queue / JoinableQueue: get_async,
put_async, async for, join_async, with producers and consumers in other
processes (fork and spawn), cancellation and timeouts."""
import asyncio
import multiprocessing as mp
import threading

import pytest

import shmkit
from shmkit import JoinableQueue, Queue

CONTEXTS = ["fork", "spawn"]
JOIN_TIMEOUT = 120


@pytest.fixture
def name(shm_name):
    return shm_name


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, JOIN_TIMEOUT))


def _producer(q, start, n, go):
    go.wait(JOIN_TIMEOUT)
    for i in range(start, start + n):
        q.put(i)


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_many_coroutines_one_thread_producers_elsewhere(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    go = ctx.Event()
    n_coros, per_prod = 50, 200
    with Queue(name, create=True) as q:
        procs = [ctx.Process(target=_producer, args=(q, k * per_prod, per_prod, go))
                 for k in range(2)]
        for p in procs:
            p.start()

        async def main():
            got = []

            async def consumer():
                while True:
                    item = await q.get_async()
                    if item is None:
                        return
                    got.append(item)

            before = threading.active_count()
            tasks = [asyncio.create_task(consumer()) for _ in range(n_coros)]
            for _ in range(5):
                await asyncio.sleep(0)
            # fifty waiting coroutines, one waiter thread
            assert threading.active_count() <= before + 1
            go.set()
            while len(got) < 2 * per_prod:
                await asyncio.sleep(0.01)
            for _ in range(n_coros):
                await q.put_async(None)
            await asyncio.gather(*tasks)
            return got

        got = run(main())
        assert sorted(got) == list(range(2 * per_prod))
        for p in procs:
            p.join(JOIN_TIMEOUT)
            assert p.exitcode == 0
        assert q.qsize() == 0


def test_event_loop_runs_while_waiting(name):
    with Queue(name, create=True) as q:
        async def main():
            getter = asyncio.create_task(q.get_async())
            ticks = 0
            for _ in range(20):            # the loop is not blocked
                await asyncio.sleep(0.001)
                ticks += 1
            assert not getter.done()
            q.put("late")
            return await getter, ticks

        assert run(main()) == ("late", 20)


def test_timeouts(name):
    with JoinableQueue(name, maxsize=1, create=True) as q:
        async def main():
            with pytest.raises(shmkit.Empty):
                await q.get_async(timeout=0.05)
            with pytest.raises(shmkit.Empty):
                await q.get_async(timeout=0)
            await q.put_async(b"a", timeout=0)
            with pytest.raises(shmkit.Full):
                await q.put_async(b"b", timeout=0.05)
            assert await q.join_async(timeout=0.05) is False
            with pytest.raises(ValueError):
                await q.get_async(timeout=-1)

        run(main())
        assert q.qsize() == 1 and q.get() == b"a"


def test_cancellation_withdraws_the_wait(name):
    with Queue(name, create=True) as q:
        async def main():
            tasks = [asyncio.create_task(q.get_async()) for _ in range(10)]
            await asyncio.sleep(0.01)
            for t in tasks[:5]:
                t.cancel()
            await asyncio.gather(*tasks[:5], return_exceptions=True)
            for i in range(5):
                q.put(i)
            got = await asyncio.gather(*tasks[5:])
            assert sorted(got) == list(range(5))
            # a wait_for timeout cancels too
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(q.get_async(), 0.01)
            # nobody waits now: an item put stays in the queue
            q.put("stays")
            for _ in range(10):
                await asyncio.sleep(0.001)
            assert q.qsize() == 1

        run(main())
        assert q.get_nowait() == "stays"
        assert q.qsize() == 0


def _drain(q, n, go):
    go.wait(JOIN_TIMEOUT)
    for _ in range(n):
        q.get()
        q.task_done()


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_put_async_and_join_async_with_consumer_elsewhere(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    go = ctx.Event()
    n = 100
    with JoinableQueue(name, maxsize=4, create=True) as q:
        p = ctx.Process(target=_drain, args=(q, n, go))
        p.start()

        async def main():
            async def producer(k):
                for i in range(k, n, 4):
                    await q.put_async(i)
            tasks = [asyncio.create_task(producer(k)) for k in range(4)]
            await asyncio.sleep(0.01)
            assert q.qsize() == 4            # full: the producers wait
            go.set()
            await asyncio.gather(*tasks)
            return await q.join_async()

        assert run(main()) is True
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
        assert q.tasks() == {"unfinished": 0, "reclaimed": 0}


def _put_three(q):
    for i in range(3):
        q.put(i)


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_async_for_until_closed(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    q = Queue(name, create=True)

    async def main():
        got = []

        async def reader():
            async for item in q:
                got.append(item)
                if len(got) == 3:
                    q.close()

        p = ctx.Process(target=_put_three, args=(q,))
        p.start()
        await reader()
        p.join(JOIN_TIMEOUT)
        return got

    assert run(main()) == [0, 1, 2]
    assert q.closed


def test_close_wakes_async_waiters(name):
    q = Queue(name, create=True)

    async def main():
        getter = asyncio.create_task(q.get_async())
        await asyncio.sleep(0.01)
        q.close()
        with pytest.raises(ValueError):
            await getter

    run(main())

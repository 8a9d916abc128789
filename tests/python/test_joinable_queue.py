"""Tests of shmkit.JoinableQueue: task_done()/join() across real processes
(fork and spawn), including a consumer SIGKILLed between get() and
task_done()."""
import multiprocessing as mp
import os
import pickle
import signal

import pytest

from shmkit import JoinableQueue, Queue, Segment

CONTEXTS = ["fork", "spawn"]
JOIN_TIMEOUT = 120


@pytest.fixture
def name(shm_name):
    return shm_name


def test_task_done_and_join_in_one_process(name):
    with JoinableQueue(name, create=True) as q:
        assert q.join(0) is True
        for i in range(3):
            q.put(i)
        assert q.tasks() == {"unfinished": 3, "reclaimed": 0}
        assert q.join(0) is False
        assert q.join(timeout=0.01) is False
        for _ in range(3):
            q.get()
        assert q.tasks()["unfinished"] == 3      # taken, not yet done
        q.task_done()
        q.task_done()
        assert q.join(0) is False
        q.task_done()
        assert q.join() is True
        with pytest.raises(ValueError, match="too many"):
            q.task_done()
        assert q.tasks() == {"unfinished": 0, "reclaimed": 0}
        q.check()


def test_task_done_counts_items_taken_not_items_queued(name):
    with JoinableQueue(name, create=True) as q:
        q.put(b"x")
        with pytest.raises(ValueError, match="too many"):
            q.task_done()       # nothing taken yet
        assert q.tasks()["unfinished"] == 1


def test_plain_queue_becomes_joinable(name):
    with Queue(name, create=True) as plain:
        with pytest.raises(ValueError, match="not joinable"):
            plain._task_done()
        plain.put(1)
        with JoinableQueue(name) as jq:
            assert jq.tasks()["unfinished"] == 1
            assert plain.get() == 1           # counted through any handle
            assert jq.join(0) is False
            jq.task_done()
            assert jq.join(0) is True


def test_segment_and_pickle(name):
    with Segment(name, create=True) as seg:
        q = seg.queue("jobs", joinable=True)
        assert isinstance(q, JoinableQueue)
        q2 = pickle.loads(pickle.dumps(q))
        assert type(q2) is JoinableQueue
        q.put(1)
        q2.get()
        q2.task_done()
        assert q.join(0)
        q.close()
        q2.close()


def _worker(q):
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            return


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_join_waits_for_consumers_in_other_processes(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    with JoinableQueue(name, create=True) as q:
        procs = [ctx.Process(target=_worker, args=(q,)) for _ in range(3)]
        for p in procs:
            p.start()
        for i in range(3000):
            q.put(i)
        for _ in procs:
            q.put(None)
        assert q.join(timeout=JOIN_TIMEOUT) is True
        assert q.qsize() == 0
        assert q.tasks() == {"unfinished": 0, "reclaimed": 0}
        for p in procs:
            p.join(JOIN_TIMEOUT)
            assert p.exitcode == 0


def _take_then_wait(q, took, go):
    q.get()
    q.get()
    took.set()
    go.wait(JOIN_TIMEOUT)
    q.task_done()
    q.task_done()


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_join_blocks_until_the_last_task_done(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    took, go = ctx.Event(), ctx.Event()
    with JoinableQueue(name, create=True) as q:
        q.put(1)
        q.put(2)
        p = ctx.Process(target=_take_then_wait, args=(q, took, go))
        p.start()
        assert took.wait(JOIN_TIMEOUT)
        assert q.qsize() == 0
        assert q.join(timeout=0.2) is False    # taken but not done
        go.set()
        assert q.join(timeout=JOIN_TIMEOUT) is True
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
        assert q.tasks()["reclaimed"] == 0


def _joiner(q, out):
    out.put(q.join(timeout=JOIN_TIMEOUT))


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_join_in_another_process_is_woken(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    out = ctx.Queue()
    with JoinableQueue(name, create=True) as q:
        q.put(b"job")
        p = ctx.Process(target=_joiner, args=(q, out))
        p.start()
        assert q.get() == b"job"
        q.task_done()
        assert out.get(timeout=JOIN_TIMEOUT) is True
        p.join(JOIN_TIMEOUT)


def _take_and_hang(q, n, took):
    for _ in range(n):
        q.get()
    took.set()
    signal.pause()


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_sigkilled_consumer_does_not_wedge_join(name, ctx_name):
    """A consumer killed between get() and task_done(): its items count as
    done once join() sees it is gone; the items still queued do not."""
    ctx = mp.get_context(ctx_name)
    took = ctx.Event()
    with JoinableQueue(name, create=True) as q:
        for i in range(5):
            q.put(i)
        p = ctx.Process(target=_take_and_hang, args=(q, 3, took))
        p.start()
        assert took.wait(JOIN_TIMEOUT)
        os.kill(p.pid, signal.SIGKILL)
        p.join(JOIN_TIMEOUT)
        # join() reclaims the dead consumer's three items; the two still
        # queued keep it waiting
        assert q.join(timeout=0.3) is False
        assert q.tasks() == {"unfinished": 2, "reclaimed": 3}
        q.get()
        q.get()
        q.task_done()
        q.task_done()
        assert q.join(timeout=JOIN_TIMEOUT) is True
        q.check()


def test_dead_unreaped_consumer_is_reclaimed(name):
    """A zombie (killed, not yet waited for) counts as dead."""
    with JoinableQueue(name, create=True) as q:
        q.put(1)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            q.get()
            os.write(w, b"x")
            signal.pause()
            os._exit(0)
        assert os.read(r, 1) == b"x"
        os.kill(pid, signal.SIGKILL)
        try:
            assert q.join(timeout=JOIN_TIMEOUT) is True
            assert q.tasks()["reclaimed"] == 1
        finally:
            os.waitpid(pid, 0)
            os.close(r)
            os.close(w)

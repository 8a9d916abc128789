"""Shared fixtures: unique segment names that are always cleaned up, and
forked background workers."""
import contextlib
import os
import uuid

import pytest

import shmkit


def unique_name(tag: str = "t") -> str:
    return f"shmkit-test-{os.getpid()}-{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def shm_name(request):
    """A fresh segment name, unlinked after the test if it still exists."""
    name = unique_name(request.node.name[:40].replace("[", "-").replace("]", "").replace("/", "_"))
    yield name
    try:
        shmkit.unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture(params=["fork", "spawn"])
def mp_context(request):
    """Both start methods: fork shares the parent's mapping, spawn attaches anew."""
    import multiprocessing

    return multiprocessing.get_context(request.param)


@contextlib.contextmanager
def busy_workers(target, *args, n: int = 2):
    """Fork n processes running ``target(*args, stop, worker_index)`` while
    the block runs (each loops until ``stop`` is set); then stop and join
    them, and check that every one exited cleanly."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, stop, w)) for w in range(n)]
    for p in procs:
        p.start()
    try:
        yield procs
    finally:
        stop.set()
        for p in procs:
            p.join(60)
    assert [p.exitcode for p in procs] == [0] * n

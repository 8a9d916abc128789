"""Queue benchmarks: messages per second from a producer process to a
consumer process, ``shmkit.Queue`` against ``multiprocessing.Queue``,
``multiprocessing.SimpleQueue`` and ``faster-fifo`` (PyPI).

Items are ``bytes`` of 64 B, 1 KB and 64 KB.  One at a time (``put`` /
``get``) for all, and batched (``put_many`` / ``get_many``, 64 items a
batch) for the two queues that have a batch API (shmkit, faster-fifo); the
stdlib queues have none.

Each repeat forks a producer and a consumer; both start together.  The
producer puts for ``budget`` seconds, then a 1-byte end marker; the consumer
counts what it gets until the marker and its count over its elapsed time is
the figure: delivered messages per second, end to end.  Every queue is
bounded (1024 items, or 8 MiB for the byte-bounded ones) so that a fast
producer cannot run ahead into unbounded memory.

Targets: 64 B >= 2M msgs/s batched and >= 1M/s one at a time,
>= 2x faster-fifo, >= 10x multiprocessing.Queue.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import time
from typing import Any, Callable, List, Optional

from .harness import Case, Fixture, close_then_unlink, fork_workers, shm_name

SIZES = {"64 B": 64, "1 KB": 1024, "64 KB": 65536}
BATCH = 64
MAXSIZE = 1024
RING_BYTES = 8 << 20
END = b"!"


TARGETS = [
    {"label": "queue 64 B batched >= 2M msgs/s",
     "of": ("queue-batched", "64 B items", "shmkit"), "min": 2e6},
    {"label": "queue 64 B one at a time >= 1M msgs/s",
     "of": ("queue-one-at-a-time", "64 B items", "shmkit"), "min": 1e6},
    {"label": "queue 64 B batched >= 2x faster-fifo",
     "of": ("queue-batched", "64 B items", "shmkit"),
     "over": ("queue-batched", "64 B items", "faster-fifo"), "factor": 2},
    {"label": "queue 64 B one at a time >= 10x multiprocessing.Queue",
     "of": ("queue-one-at-a-time", "64 B items", "shmkit"),
     "over": ("queue-one-at-a-time", "64 B items", "multiprocessing.Queue"), "factor": 10},
]


class QueueFixture(Fixture):
    """obj: the queue in the parent; attach(): the queue in a forked child;
    put_many/get_many: batch functions or None; flush(q): make sure what a
    child put is delivered before it exits."""

    def __init__(self, obj, close, attach: Callable[[], Any],
                 batched: bool, flush: Optional[Callable[[Any], None]] = None):
        super().__init__(obj, close)
        self.attach = attach
        self.batched = batched
        self.flush = flush


def _shmkit(size: int) -> QueueFixture:
    import shmkit

    name = shm_name("q")
    q = shmkit.Queue(name, maxsize=MAXSIZE, create=True, ring_bytes=RING_BYTES)
    return QueueFixture(q, close_then_unlink(q, name), lambda: shmkit.Queue(name, create=False),
                        batched=True)


def _mp_queue(size: int) -> QueueFixture:
    q = mp.get_context("fork").Queue(MAXSIZE)

    def flush(q):  # the feeder thread must deliver before the child exits
        q.close()
        q.join_thread()

    return QueueFixture(q, q.close, lambda: q, batched=False, flush=flush)


def _mp_simple(size: int) -> QueueFixture:
    q = mp.get_context("fork").SimpleQueue()
    return QueueFixture(q, q.close, lambda: q, batched=False)


def _faster_fifo(size: int) -> QueueFixture:
    from faster_fifo import Queue

    q = Queue(max_size_bytes=RING_BYTES)
    return QueueFixture(q, q.close, lambda: q, batched=True)


IMPLS = [
    ("shmkit", _shmkit, (), True),
    ("multiprocessing.Queue", _mp_queue, (), False),
    ("multiprocessing.SimpleQueue", _mp_simple, (), False),
    ("faster-fifo", _faster_fifo, ("faster_fifo",), False),
]


def _producer(fx: QueueFixture, size: int, batched: bool):
    def target(budget, conn, go):
        q = fx.attach()
        item = b"m" * size
        batch = [item] * BATCH
        conn.send("ready")
        go.wait()
        sent = 0
        clock = time.perf_counter
        t_end = clock() + budget
        if batched:
            put_many = q.put_many
            while clock() < t_end:
                put_many(batch)
                sent += BATCH
        else:
            put = q.put
            while clock() < t_end:
                for _ in range(16):
                    put(item)
                sent += 16
        q.put(END)
        if fx.flush is not None:
            fx.flush(q)
        conn.send((sent, 0.0))
    return target


def _consumer(fx: QueueFixture):
    def target(budget, conn, go):
        q = fx.attach()
        get = q.get
        conn.send("ready")
        go.wait()
        got = 0
        t0 = time.perf_counter()
        while True:
            x = get()
            if len(x) < 8:
                break
            got += 1
        elapsed = time.perf_counter() - t0
        conn.send((got, elapsed))
    return target


def _batched_consumer(fx: QueueFixture):
    def target(budget, conn, go):
        q = fx.attach()
        import inspect

        params: Any
        try:
            params = inspect.signature(q.get_many).parameters
        except (TypeError, ValueError):
            params = {}
        kw = "max_messages_to_get" if "max_messages_to_get" in params else "max_items"
        get_many = q.get_many
        conn.send("ready")
        go.wait()
        got = 0
        t0 = time.perf_counter()
        while True:
            xs = get_many(**{kw: BATCH, "timeout": 30})
            if xs and len(xs[-1]) < 8:
                got += len(xs) - 1
                break
            got += len(xs)
        elapsed = time.perf_counter() - t0
        conn.send((got, elapsed))
    return target


def _rate(size: int, batched: bool):
    def rate(fx: QueueFixture, budget: float):
        cons = _batched_consumer(fx) if batched else _consumer(fx)
        (sent, _), (got, elapsed) = fork_workers([_producer(fx, size, batched), cons], budget)
        if got != sent:
            raise RuntimeError(f"consumer got {got} of {sent} messages")
        return got, elapsed
    return rate


def cases(mode: str) -> List[Case]:
    sizes = list(SIZES) if mode != "tiny" else ["64 B", "64 KB"]
    out = []
    for size_label in sizes:
        size = SIZES[size_label]
        for label, make, req, base in IMPLS:
            fkey = ("queue", label, size)
            for batched in (False, True):
                if batched and label not in ("shmkit", "faster-fifo"):
                    continue
                out.append(Case(
                    suite="queue",
                    chart="queue-batched" if batched else "queue-one-at-a-time",
                    group=f"{size_label} items",
                    impl=label, unit="msgs/s",
                    fixture=fkey, make_fixture=functools.partial(make, size),
                    rate=_rate(size, batched), requires=req, baseline=base,
                    budget_scale=4.0,
                ))
    return out

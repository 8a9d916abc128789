"""Awaitable waits on shared-memory futexes, without blocking the event loop.

An event loop must never sleep in a futex wait, so the waits happen in a
helper thread: one thread per (handle, kind of wait) in this process, shared
by every coroutine of every event loop that waits on it.  A coroutine that
must wait registers a future with that hub and awaits it; the hub's thread
sleeps in the C wait (GIL released), and when the wait returns it hands
every registered future to its loop (``loop.call_soon_threadsafe``); each
coroutine then retries its non-blocking operation and registers again if it
lost the race.  The C waits check their condition under the structure's lock
before sleeping, so a wake-up between a failed try and the registration is
never lost.

So many coroutines waiting on one queue cost one sleeping thread, not one
per coroutine.  A hub's thread sleeps at most ``NAP`` seconds at a time and
ends when no future is registered, so it outlives its last waiter by at most
that long.  Cancelling a coroutine (or its timeout expiring) removes its
future: nothing was taken on its behalf, so nothing is lost.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, Optional, Tuple

NAP = 0.5   # longest single sleep of a hub's thread, in seconds

_hubs: Dict[Tuple[int, str], "_Hub"] = {}
_hubs_lock = threading.Lock()


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class _Hub:
    """The futures waiting on one handle for one kind of wait, and the
    thread that waits for them.  ``step(size, nap)`` does one wait of at most
    ``nap`` seconds: True if woken (or ready), False on timeout; ``size`` is
    the smallest ``size`` among the registered futures."""

    def __init__(self, key: Tuple[int, str], obj: Any,
                 step: Callable[[int, float], bool]) -> None:
        self.key = key
        self.obj = obj          # keeps the handle alive while waited on
        self.step = step
        self.futures: Dict["asyncio.Future[None]", Tuple[asyncio.AbstractEventLoop, int]] = {}
        self.running = False

    def _run(self) -> None:
        while True:
            with _hubs_lock:
                if not self.futures:
                    self.running = False
                    del _hubs[self.key]
                    return
                size = min(s for _, s in self.futures.values())
            try:
                woken = self.step(size, NAP)
            except BaseException:   # closed handle, corrupt segment: let
                woken = True        # each coroutine retry and see the error
            if not woken:
                continue
            with _hubs_lock:
                ready, self.futures = self.futures, {}
            for fut, (loop, _) in ready.items():
                try:
                    loop.call_soon_threadsafe(_resolve, fut)
                except RuntimeError:   # that loop is closed
                    pass


async def wait(obj: Any, kind: str, step: Callable[[int, float], bool],
               timeout: Optional[float], size: int = 0) -> None:
    """Return once ``step`` reports a wake-up for ``obj`` (then retry the
    operation) or after ``timeout`` seconds (None: no limit)."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[None]" = loop.create_future()
    key = (id(obj), kind)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = _Hub(key, obj, step)
        hub.futures[fut] = (loop, size)
        start = not hub.running
        hub.running = True
    if start:
        threading.Thread(target=hub._run, name=f"shmkit-{kind}-waiter",
                         daemon=True).start()
    timer = loop.call_later(timeout, _resolve, fut) if timeout is not None else None
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()
        with _hubs_lock:
            hub.futures.pop(fut, None)


class Deadline:
    """Seconds left before a deadline on the running loop's clock."""

    def __init__(self, timeout: Optional[float]) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError("'timeout' must be a non-negative number")
        self.loop = asyncio.get_running_loop()
        self.end = None if timeout is None else self.loop.time() + timeout

    def left(self) -> Optional[float]:
        """None (no limit), else seconds left (<= 0: expired)."""
        return None if self.end is None else self.end - self.loop.time()

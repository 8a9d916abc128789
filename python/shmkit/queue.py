"""Queue: a multi-producer, multi-consumer queue in shared memory, with the
API of :class:`multiprocessing.Queue`.

Standalone, ``Queue("jobs", maxsize=1000)`` opens (or creates) a segment
named ``jobs`` holding one queue called ``"queue"``; in a segment,
``seg.queue("jobs", maxsize=1000)``.  Any process that opens the same name
uses the same queue, and a Queue pickles by name, so it can be passed to a
``multiprocessing.Process`` or ``Pool`` (fork or spawn).

``bytes`` items are stored as they are; anything else is pickled (unless
``allow_pickle=False``, which accepts and returns ``bytes`` only and never
unpickles what another process put).  ``put``/``get`` block on a futex in
shared memory (no CPU used while waiting) and raise ``queue.Full`` /
``queue.Empty`` exactly as the standard library does.  See docs/queue.md.
"""
from __future__ import annotations

import pickle
import queue as _stdqueue
from typing import Any, AsyncIterator, Optional

from . import _async, _shmkit
from ._handle import Handle
from .remote import open_remote
from .segment import JOINABLE_QUEUE, Segment, Trust, register_kind

__all__ = ["Queue", "JoinableQueue", "Full", "Empty"]

Full = _stdqueue.Full
Empty = _stdqueue.Empty

STANDALONE_OBJECT = "queue"


class Queue(Handle, _shmkit.Queue):
    """Queue(name, maxsize=0, *, create=None, ring_bytes=0, allow_pickle=True,
    size=0, max_size=0, mode=0o600, trust="owner")

    A process-safe FIFO queue in the shared-memory segment ``name``.

    * ``maxsize``: most items held at once (``<= 0``: unbounded, as in
      ``multiprocessing.Queue``).  The ring buffer (``ring_bytes``, 1 MiB by
      default, rounded up to a power of two) bounds the bytes of small items
      held; items larger than ``ring_bytes / 8`` are stored out of line in
      the segment heap, so item size is limited only by the segment.
    * ``create``: ``None`` opens or creates, ``True`` requires a new segment
      (``FileExistsError``), ``False`` an existing one (``FileNotFoundError``).
      ``maxsize``/``ring_bytes`` apply only when the queue is created.
    * ``trust`` says whose existing segment to accept (``"owner"``: only
      this user's, writable by nobody else; see ``Segment``).

    Methods: ``put(item, block=True, timeout=None)``, ``get(block=True,
    timeout=None)``, ``put_nowait``, ``get_nowait``, ``put_many(items)``,
    ``get_many(max_items)``, ``push``/``pop`` (non-blocking), ``qsize``,
    ``empty``, ``full``, ``check``, ``close``, ``unlink``; for asyncio
    ``await get_async(timeout=None)``, ``await put_async(item,
    timeout=None)`` and ``async for item in queue`` (see docs/queue.md).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, url: Optional[str] = None, **kwargs: Any):
        # url= or SHMKIT_URL: the same structure on a Redis/Valkey server
        other = open_remote("queue", url, args, kwargs)
        return other if other is not None else _shmkit.Queue.__new__(cls)

    def __init__(self, name: str, maxsize: int = 0, *, create: Optional[bool] = None,
                 ring_bytes: int = 0, allow_pickle: bool = True, size: int = 0,
                 max_size: int = 0, mode: int = 0o600, url: Optional[str] = None,
                 trust: Trust = "owner") -> None:
        with Segment(name, size=size, create=create, mode=mode, max_size=max_size,
                     trust=trust) as seg:
            super().__init__(seg, STANDALONE_OBJECT, maxsize, ring_bytes, allow_pickle)

    @classmethod
    def _open_in(cls, segment: Segment, name: str, maxsize: int = 0, *,
                 ring_bytes: int = 0, allow_pickle: bool = True) -> "Queue":
        self = _shmkit.Queue.__new__(cls)
        _shmkit.Queue.__init__(self, segment, name, maxsize, ring_bytes, allow_pickle)
        return self

    # multiprocessing.Queue compatibility: there is no feeder thread.
    def join_thread(self) -> None:
        """No-op (multiprocessing.Queue compatibility: no feeder thread)."""

    def cancel_join_thread(self) -> None:
        """No-op (multiprocessing.Queue compatibility: no feeder thread)."""

    def __len__(self) -> int:
        return self.qsize()

    # asyncio: the waits run in one helper thread per handle (shmkit._async)
    async def get_async(self, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item, waiting up to ``timeout``
        seconds (None: no limit) without blocking the event loop; raises
        ``queue.Empty`` on timeout.  Cancelling it takes nothing."""
        deadline = _async.Deadline(timeout)
        while True:
            try:
                return self.get_nowait()
            except Empty:
                left = deadline.left()
                if left is not None and left <= 0:
                    raise
            await _async.wait(self, "get", self._wait_get, left)

    async def put_async(self, item: Any, timeout: Optional[float] = None) -> None:
        """Append ``item``, waiting up to ``timeout`` seconds (None: no
        limit) for room without blocking the event loop; raises
        ``queue.Full`` on timeout.  Cancelling it puts nothing."""
        deadline = _async.Deadline(timeout)
        size = -1
        while True:
            try:
                return self.put_nowait(item)
            except Full:
                left = deadline.left()
                if left is not None and left <= 0:
                    raise
            if size < 0:   # the bytes it needs, for the wait
                size = len(item) if isinstance(item, bytes) else len(
                    pickle.dumps(item, pickle.HIGHEST_PROTOCOL))
            await _async.wait(self, "put", self._wait_put, left, size)

    def _wait_get(self, size: int, nap: float) -> bool:
        return self._wait(False, 0, nap)

    def _wait_put(self, size: int, nap: float) -> bool:
        return self._wait(True, size, nap)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items_async()

    async def _items_async(self) -> AsyncIterator[Any]:
        # until this handle is closed
        while not self.closed:
            try:
                item = await self.get_async()
            except ValueError:
                if self.closed:
                    return
                raise
            yield item

    def _reopen_kwargs(self):
        return {"allow_pickle": self.allow_pickle}

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Queue {self.segment_name!r}/{self.object_name!r} closed>"
        return (f"<shmkit.Queue {self.segment_name!r}/{self.object_name!r} "
                f"qsize={self.qsize()} maxsize={self.maxsize}>")


class JoinableQueue(Queue):
    """JoinableQueue(name, maxsize=0, *, ...): a :class:`Queue` with the
    ``task_done()`` / ``join()`` of :class:`multiprocessing.JoinableQueue`,
    across processes.  Same arguments as ``Queue``.

    Every item put is *unfinished* until a ``task_done()`` call marks it
    done; ``join()`` returns once no item is unfinished.  ``task_done()``
    more often than items were taken raises ``ValueError``.  Items taken by
    a process that ends (killed or not) before marking them done count as
    done once ``join()`` sees that the process is gone (within 0.1 s), so a
    killed consumer never wedges ``join()``; ``tasks()["reclaimed"]`` counts
    them.  Opening an existing plain queue as a JoinableQueue makes it
    joinable for every handle from then on.  See docs/queue.md.
    """

    __slots__ = ()

    def __init__(self, name: str, maxsize: int = 0, **kwargs: Any) -> None:
        super().__init__(name, maxsize, **kwargs)
        self._make_joinable()

    @classmethod
    def _open_in(cls, segment: Segment, name: str, maxsize: int = 0, **kwargs: Any
                 ) -> "JoinableQueue":
        self = super()._open_in(segment, name, maxsize, **kwargs)
        self._make_joinable()
        return self  # type: ignore[return-value]

    def task_done(self) -> None:
        """Mark one item taken by ``get()`` done (in any process)."""
        self._task_done()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait until every item put is marked done (or was taken by a
        process that has died).  True when so, False after ``timeout``
        seconds (None: no limit)."""
        return self._join(timeout)

    async def join_async(self, timeout: Optional[float] = None) -> bool:
        """``join()`` without blocking the event loop."""
        deadline = _async.Deadline(timeout)
        while True:
            if self._join(0):
                return True
            left = deadline.left()
            if left is not None and left <= 0:
                return False
            await _async.wait(self, "join", self._wait_join, left)

    def _wait_join(self, size: int, nap: float) -> bool:
        return self._join(nap)

    def tasks(self) -> dict:
        """``{"unfinished": items put and not marked done, "reclaimed":
        items of dead consumers counted done}`` (a snapshot)."""
        unfinished, reclaimed = self._tasks()
        return {"unfinished": unfinished, "reclaimed": reclaimed}

    def __repr__(self) -> str:
        return super().__repr__().replace("<shmkit.Queue", "<shmkit.JoinableQueue", 1)


register_kind("queue", Queue)
register_kind(JOINABLE_QUEUE, JoinableQueue)

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

import queue as _stdqueue
from typing import Any, Optional

from . import _shmkit
from ._handle import Handle
from .remote import open_remote
from .segment import Segment, Trust, register_kind

__all__ = ["Queue", "Full", "Empty"]

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
    ``empty``, ``full``, ``check``, ``close``, ``unlink``.
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

    def _reopen_kwargs(self):
        return {"allow_pickle": self.allow_pickle}

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Queue {self.segment_name!r}/{self.object_name!r} closed>"
        return (f"<shmkit.Queue {self.segment_name!r}/{self.object_name!r} "
                f"qsize={self.qsize()} maxsize={self.maxsize}>")


register_kind("queue", Queue._open_in)

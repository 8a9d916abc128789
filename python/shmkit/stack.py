"""Stack: a lock-free LIFO stack in shared memory.

Standalone, ``Stack("work")`` opens (or creates) a segment named ``work``
holding one stack called ``"stack"``; in a segment, ``seg.stack("work")``.
``push(item)``, ``pop()`` (``IndexError`` when empty) or ``pop(default)``,
``peek()``, ``len()``.  ``bytes`` are stored as they are, anything else is
pickled (unless ``allow_pickle=False``).  Pickles by name, so it can be
passed to other processes.  See docs/queue.md.
"""
from __future__ import annotations

from typing import Any, Optional

from . import _shmkit
from ._handle import Handle
from .remote import open_remote
from .segment import Segment, Trust, register_kind

__all__ = ["Stack"]

STANDALONE_OBJECT = "stack"


class Stack(Handle, _shmkit.Stack):
    """Stack(name, *, create=None, allow_pickle=True, size=0, max_size=0, mode=0o600, trust="owner")

    A process-safe, lock-free LIFO stack in the shared-memory segment
    ``name``; each item is one block of the segment heap, so the stack
    grows with the segment (up to ``max_size``).  ``trust`` says whose
    existing segment to accept (see ``Segment``).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, url: Optional[str] = None, **kwargs: Any):
        # url= or SHMKIT_URL: the same structure on a Redis/Valkey server
        other = open_remote("stack", url, args, kwargs)
        return other if other is not None else _shmkit.Stack.__new__(cls)

    def __init__(self, name: str, *, create: Optional[bool] = None,
                 allow_pickle: bool = True, size: int = 0, max_size: int = 0,
                 mode: int = 0o600, url: Optional[str] = None, trust: Trust = "owner") -> None:
        with Segment(name, size=size, create=create, mode=mode, max_size=max_size,
                     trust=trust) as seg:
            super().__init__(seg, STANDALONE_OBJECT, allow_pickle)

    @classmethod
    def _open_in(cls, segment: Segment, name: str, *, allow_pickle: bool = True) -> "Stack":
        self = _shmkit.Stack.__new__(cls)
        _shmkit.Stack.__init__(self, segment, name, allow_pickle)
        return self

    def _reopen_kwargs(self):
        return {"allow_pickle": self.allow_pickle}

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Stack {self.segment_name!r}/{self.object_name!r} closed>"
        return f"<shmkit.Stack {self.segment_name!r}/{self.object_name!r} len={len(self)}>"


register_kind("stack", Stack)

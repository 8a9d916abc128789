"""Counter: a sharded counter in shared memory whose increments scale with
the cores.

Standalone, ``Counter("hits")`` makes (or opens) a segment named ``hits``
holding one counter called ``"counter"``; inside a segment,
``seg.counter("hits")``.

Each process adds to a cell of its own (a cache line nobody else writes),
claimed at its first ``add``; ``value`` is the sum of the cells.  Every add
is one atomic instruction, so no add is ever lost or counted twice, under
any number of processes, forks and kills.  ``value`` is exact when no add
is in flight; while adds run it is the committed adds plus some of those in
flight (for a counter that only grows, between the value before and after
the read).  Reading costs one cache line per cell: read rarely, add often.
"""
from __future__ import annotations

from typing import Optional

from . import _shmkit
from ._handle import Handle
from .remote import refuse_url
from .segment import Segment, Trust, register_kind

__all__ = ["Counter"]

STANDALONE_OBJECT = "counter"


class Counter(Handle, _shmkit.Counter):
    """Counter(name, *, create=None, cells=None, mode=0o600, max_size=0, trust="owner")

    A sharded int64 counter (0 when created) in the shared-memory segment
    ``name``.  ``create=None`` opens it or creates it, ``True`` requires a
    new segment (``FileExistsError``), ``False`` an existing one
    (``FileNotFoundError``).  ``cells`` (a power of two, default 256) is
    used only to create: more cells than processes adding at once buys
    nothing; with fewer, processes share cells (still exact, slower).

    ``c.add(n=1)``, ``c += n``, ``c -= n``; ``c.value`` or ``int(c)`` reads
    the sum; ``c.reset()`` sets it to 0 and returns what it took out (an add
    running meanwhile is in that total or stays in the counter).  Values
    wrap modulo 2**64 like C int64.  Pickles as its name.  ``trust`` is
    the segment's (see ``Segment``); a Counter is shared-memory only (no
    ``url=``).
    """

    __slots__ = ()

    def __init__(self, name: str, *, create: Optional[bool] = None,
                 cells: Optional[int] = None, mode: int = 0o600,
                 max_size: int = 0, url: Optional[str] = None, trust: Trust = "owner") -> None:
        refuse_url("Counter", url)
        with Segment(name, create=create, mode=mode, max_size=max_size, trust=trust) as seg:
            try:
                super().__init__(seg, STANDALONE_OBJECT, cells, create is not False)
            except BaseException:
                if seg.created:      # do not leave a half-made segment behind
                    seg.unlink()
                raise

    @classmethod
    def _open_in(cls, segment: Segment, name: str, cells: Optional[int] = None) -> "Counter":
        self = cls.__new__(cls)
        _shmkit.Counter.__init__(self, segment, name, cells)
        return self

    def __repr__(self) -> str:
        where = f"{self.segment_name!r}/{self.object_name!r}"
        if self.closed:
            return f"<shmkit.Counter {where} closed>"
        return f"<shmkit.Counter {where} value={self.value}>"


register_kind("counter", Counter)

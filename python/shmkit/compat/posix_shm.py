"""The ``posix-shm`` package's Python API over shmkit's segment and structures.

Replace ``from posix_shm import ...`` by ``from shmkit.compat.posix_shm import ...``.

``SharedMemory(name, size)`` is a :class:`shmkit.Segment` (a leading ``/`` in
the name is dropped; ``size=0`` attaches to an existing segment, a positive
size opens it or creates it with that many bytes backed; it grows on demand
beyond them).  The structures are named objects in it, created on first use
and attached to by name afterwards; each is the shmkit structure of the same
kind, with all of its methods:

* ``Queue(shm, name, max_size=1024)``: ``push`` (``queue.Full`` when full),
  ``pop`` (``queue.Empty`` when empty, or ``pop(default)``), ``empty``,
  ``full``, ``size``; items are any picklable object, ``bytes`` stored as-is.
* ``Stack(shm, name, max_size=1024)``: ``push``, ``pop`` (``IndexError`` when
  empty, or ``pop(default)``), ``empty``, ``size``.  ``max_size`` is not
  enforced: the stack grows with the segment.
* ``HashMap(shm, name, max_entries=1024)``: a :class:`shmkit.SharedDict`
  (``[]``, ``del``, ``in``, ``get``, ``len``...).  ``max_entries`` pre-sizes
  the table and is not a limit.
* ``Bitset(shm, name, size=...)``: ``set``/``clear``/``flip``/``test``
  (each atomic, returning the bit's previous value), ``count``, ``[]``.
* ``Array(shm, name, size=..., dtype="float64")``: ``arr[i]``, ``len``,
  atomic ``add``/``exchange``/``compare_and_swap``, buffer protocol.

``size`` / ``max_size`` / ``max_entries`` apply when the object is created;
attaching takes whatever exists.
"""
from __future__ import annotations

from typing import Any, Optional

from .. import _shmkit
from ..array import Array as _Array
from ..bitset import Bitset as _Bitset
from ..dict import SharedDict as _SharedDict
from ..queue import Queue as _Queue
from ..segment import Segment
from ..stack import Stack as _Stack
from ._common import positive_int

__all__ = ["SharedMemory", "Queue", "Stack", "HashMap", "Bitset", "Array"]


class SharedMemory(Segment):
    """SharedMemory(name, size=0)

    The POSIX shared-memory segment ``name`` (``"/work"`` and ``"work"``
    are the same segment).  ``size > 0`` opens it or creates it with
    ``size`` bytes; ``size == 0`` attaches to an existing one
    (``FileNotFoundError`` if there is none).  ``unlink()`` removes it.
    """

    def __init__(self, name: str, size: int = 0) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size < 0:
            raise ValueError(f"size must be >= 0 (0 attaches), not {size}")
        super().__init__(name[1:] if name.startswith("/") else name, size=size,
                         create=None if size else False)

    def __reduce__(self):
        return (SharedMemory, (self.name, 0))


def _segment(shm: Any) -> Segment:
    if not isinstance(shm, Segment):
        raise TypeError(f"expected a SharedMemory, not {type(shm).__name__}")
    return shm


class Queue(_Queue):
    """Queue(shm, name, max_size=1024): a lock-free MPMC FIFO in ``shm``."""

    __slots__ = ()

    def __init__(self, shm: SharedMemory, name: str, max_size: int = 1024) -> None:
        _shmkit.Queue.__init__(self, _segment(shm), name, positive_int("max_size", max_size),
                               0, True)

    def size(self) -> int:
        """The number of items (a snapshot)."""
        return self.qsize()


class Stack(_Stack):
    """Stack(shm, name, max_size=1024): a lock-free LIFO in ``shm``
    (``max_size`` accepted, not enforced)."""

    __slots__ = ()

    def __init__(self, shm: SharedMemory, name: str, max_size: int = 1024) -> None:
        positive_int("max_size", max_size)
        _shmkit.Stack.__init__(self, _segment(shm), name, True)

    def empty(self) -> bool:
        """True if the stack holds no item (a snapshot)."""
        return len(self) == 0

    def size(self) -> int:
        """The number of items (a snapshot)."""
        return len(self)


class HashMap(_SharedDict):
    """HashMap(shm, name, max_entries=1024): a :class:`shmkit.SharedDict` in
    ``shm`` (``max_entries`` pre-sizes it; it is not a limit)."""

    __slots__ = ()

    def __init__(self, shm: SharedMemory, name: str, max_entries: int = 1024) -> None:
        _shmkit.Dict.__init__(self, _segment(shm), name, create=True,
                              capacity=positive_int("max_entries", max_entries),
                              allow_pickle=True)

    def size(self) -> int:
        """The number of keys."""
        return len(self)


class Bitset(_Bitset):
    """Bitset(shm, name, size=None): ``size`` bits, all clear, in ``shm``
    (``size`` is needed to create it, optional to attach)."""

    __slots__ = ()

    def __init__(self, shm: SharedMemory, name: str, size: Optional[int] = None) -> None:
        _shmkit.Bitset.__init__(self, _segment(shm), name, size)   # posix-shm's size: length


class Array(_Array):
    """Array(shm, name, size=None, dtype="float64"): ``size`` elements, all
    zero, in ``shm`` (``size`` is needed to create it, optional to attach)."""

    __slots__ = ()

    def __init__(self, shm: SharedMemory, name: str, size: Optional[int] = None,
                 dtype: Any = "float64") -> None:
        code, n = self._parse(dtype, size) if size is not None else (0, 0)
        _shmkit.Array.__init__(self, _segment(shm), name, code, n)

"""The three shared-memory allocators, with the API of the ``shared-allocator``
package (``allocate``, ``free``, ``write``, ``read``, ``available_bytes``,
``reset``, ``close``, ``unlink``) plus zero-copy ``view``.

Every allocator has ``check()`` (verify it against the mapping: its stats,
or ``CorruptSegmentError``) and ``stats()`` (the same figures).

Standalone, ``FreeListAllocator("name", capacity=..., create=True)`` makes a
segment ``name`` holding one allocator called ``"allocator"``; in a segment,
``seg.allocator("a", kind="freelist", capacity=...)``.  Offsets are segment
offsets: any process that opens the allocator can use them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from . import _shmkit
from ._handle import Handle
from .remote import refuse_url
from .segment import Segment, Trust, register_kind

__all__ = ["FreeListAllocator", "BumpAllocator", "SlabAllocator"]

STANDALONE_OBJECT = "allocator"
_SEGMENT_SLACK = 64 * 1024


if TYPE_CHECKING:   # what the C base types provide (see _shmkit.pyi)
    _Base = _shmkit._Allocator
else:
    _Base = object


class _AllocatorMixin(Handle, _Base):
    """Behaviour shared by the three allocator classes."""

    __slots__ = ()

    def __init__(self, name: str, capacity: Optional[int] = None,
                 create: Optional[bool] = None, *, mode: int = 0o600,
                 max_size: int = 0, url: Optional[str] = None, trust: Trust = "owner",
                 **kind_args) -> None:
        refuse_url(type(self).__name__, url)
        if create is True and capacity is None:
            raise ValueError("capacity= is required to create an allocator")
        if capacity is not None and (not isinstance(capacity, int) or capacity <= 0):
            raise ValueError("capacity must be a positive int")
        size = capacity + _SEGMENT_SLACK if capacity else 0
        if max_size and size > max_size:
            size = max_size
        with Segment(name, size=size, create=create, mode=mode, max_size=max_size,
                     trust=trust) as seg:
            self._base_init(seg, STANDALONE_OBJECT, capacity=capacity, **kind_args)

    @classmethod
    def _open_in(cls, segment: Segment, name: str, capacity: Optional[int] = None,
                 slab_size: Optional[int] = None):
        self = cls.__new__(cls)
        self._base_init(segment, name, capacity=capacity, slab_size=slab_size)
        return self

    def _base_init(self, segment, name, capacity=None, slab_size=None):
        super().__init__(segment, name, capacity, slab_size)

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.{type(self).__name__} {self.segment_name!r}/{self.object_name!r} closed>"
        return (f"<shmkit.{type(self).__name__} {self.segment_name!r}/{self.object_name!r} "
                f"capacity={self.capacity} available={self.available_bytes()}>")


class FreeListAllocator(_AllocatorMixin, _shmkit.FreeListAllocator):
    """FreeListAllocator(name, capacity=None, create=None, *, mode=0o600, max_size=0, trust="owner")

    Variable-size blocks, O(1) ``allocate(n)``/``free(offset)`` through size
    classes, lock-free, freed memory reused.  ``check()`` verifies it.
    """

    __slots__ = ()


class BumpAllocator(_AllocatorMixin, _shmkit.BumpAllocator):
    """BumpAllocator(name, capacity=None, create=None, *, mode=0o600, max_size=0, trust="owner")

    The fastest allocator: ``allocate(n)`` is one compare-and-swap; there is
    no ``free``, ``reset()`` frees everything at once.
    """

    __slots__ = ()


class SlabAllocator(_AllocatorMixin, _shmkit.SlabAllocator):
    """SlabAllocator(name, capacity=None, create=None, *, slab_size=64, mode=0o600, max_size=0,
    trust="owner")

    Fixed-size slots (``slab_size`` bytes each, ``capacity // slab_size``
    of them) tracked by an atomic bitmap: ``allocate()`` / ``free(offset)``.
    """

    __slots__ = ()

    def __init__(self, name: str, capacity: Optional[int] = None,
                 create: Optional[bool] = None, *, slab_size: int = 64,
                 mode: int = 0o600, max_size: int = 0, url: Optional[str] = None,
                 trust: Trust = "owner") -> None:
        super().__init__(name, capacity, create, mode=mode, max_size=max_size,
                         slab_size=slab_size, url=url, trust=trust)


register_kind("freelist", FreeListAllocator)
register_kind("bump", BumpAllocator)
register_kind("slab", SlabAllocator)

"""The ``shared-allocator`` package's API over shmkit's allocators.

Replace ``from shared_allocator import ...`` by
``from shmkit.compat.shared_allocator import ...``.

``FreeListAllocator``, ``BumpAllocator`` and ``SlabAllocator`` take
``(name, capacity, create=True)``: ``create=True`` makes a new allocator
(``FileExistsError`` if ``name`` exists), ``create=False`` attaches
(``FileNotFoundError`` if absent; ``capacity`` is then the existing one's).
Methods: ``allocate(size) -> offset`` (``shmkit.OutOfMemoryError``, a
``MemoryError``, when full), ``free(offset)`` (free-list and slab),
``write(offset, data)``, ``read(offset, size)``, ``reset()`` (bump),
``available_bytes()``, ``close()``, ``unlink()``; plus shmkit's zero-copy
``view(offset, size)``.  ``SlabAllocator`` also takes ``slab_size=64`` (the
slot size in bytes).  Offsets may be passed to other processes.
"""
from __future__ import annotations

from .. import alloc as _alloc

__all__ = ["FreeListAllocator", "BumpAllocator", "SlabAllocator"]


class FreeListAllocator(_alloc.FreeListAllocator):
    """FreeListAllocator(name, capacity, create=True)"""

    __slots__ = ()

    def __init__(self, name: str, capacity: int, create: bool = True) -> None:
        super().__init__(name, capacity, bool(create))


class BumpAllocator(_alloc.BumpAllocator):
    """BumpAllocator(name, capacity, create=True)"""

    __slots__ = ()

    def __init__(self, name: str, capacity: int, create: bool = True) -> None:
        super().__init__(name, capacity, bool(create))


class SlabAllocator(_alloc.SlabAllocator):
    """SlabAllocator(name, capacity, create=True, *, slab_size=64)"""

    __slots__ = ()

    def __init__(self, name: str, capacity: int, create: bool = True, *,
                 slab_size: int = 64) -> None:
        super().__init__(name, capacity, bool(create), slab_size=slab_size)

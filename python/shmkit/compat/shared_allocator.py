"""The ``shared-allocator`` package's API over shmkit's allocators.

Replace ``from shared_allocator import ...`` by
``from shmkit.compat.shared_allocator import ...``.

The constructors have the package's signatures (keywords as in its README):

* ``FreeListAllocator(name, capacity=10 MiB, slot_size=256, num_slots=None, create=True)``
* ``BumpAllocator(name, capacity=1 MiB, create=True)``
* ``SlabAllocator(name, slab_size=256, num_slabs=4096, create=True)``

``create=True`` makes a new allocator (``FileExistsError`` if ``name``
exists); ``create=False`` attaches (``FileNotFoundError`` if absent; the
sizes are then the existing allocator's).  The free list's ``slot_size`` and
``num_slots`` are accepted and checked but not limits: shmkit's free list
hands out blocks of any size up to its capacity.

Methods: ``allocate(size) -> offset`` (``shmkit.OutOfMemoryError``, a
``MemoryError``, when full), ``free(offset)`` (free list and slab; a second
free is a ``ValueError`` that changes nothing), ``write(offset, data)``,
``read(offset, size)``, ``reset()`` (bump), ``available_bytes()``,
``close()``, ``unlink()``; the slab's ``available_slabs()``/``used_slabs()``
and the bump's ``used_bytes()``; plus shmkit's zero-copy ``view(offset,
size)``.  Offsets may be passed to other processes.
"""
from __future__ import annotations

from typing import Optional

from .. import alloc as _alloc
from ._common import positive_int

__all__ = ["FreeListAllocator", "BumpAllocator", "SlabAllocator"]

MiB = 1024 * 1024


class FreeListAllocator(_alloc.FreeListAllocator):
    """FreeListAllocator(name, capacity=10 MiB, slot_size=256, num_slots=None, create=True)"""

    __slots__ = ()

    def __init__(self, name: str, capacity: int = 10 * MiB, slot_size: int = 256,
                 num_slots: Optional[int] = None, create: bool = True) -> None:
        positive_int("slot_size", slot_size)
        if num_slots is not None:
            positive_int("num_slots", num_slots)
        super().__init__(name, positive_int("capacity", capacity), bool(create))


class BumpAllocator(_alloc.BumpAllocator):
    """BumpAllocator(name, capacity=1 MiB, create=True)"""

    __slots__ = ()

    def __init__(self, name: str, capacity: int = MiB, create: bool = True) -> None:
        super().__init__(name, positive_int("capacity", capacity), bool(create))

    def used_bytes(self) -> int:
        """Bytes handed out since creation or the last ``reset()``."""
        return self.capacity - self.available_bytes()


class SlabAllocator(_alloc.SlabAllocator):
    """SlabAllocator(name, slab_size=256, num_slabs=4096, create=True)"""

    __slots__ = ()

    def __init__(self, name: str, slab_size: int = 256, num_slabs: int = 4096,
                 create: bool = True) -> None:
        positive_int("slab_size", slab_size)
        positive_int("num_slabs", num_slabs)
        super().__init__(name, slab_size * num_slabs, bool(create), slab_size=slab_size)

    def available_slabs(self) -> int:
        """Slabs free now (a snapshot)."""
        return self.available_bytes() // self.slab_size

    def used_slabs(self) -> int:
        """Slabs allocated now (a snapshot)."""
        return self.slot_count - self.available_slabs()

"""The ``zero-copy-ipc`` package's API over :class:`shmkit.SharedDict`.

Replace ``from zero_copy_ipc import ZeroCopyDict`` by
``from shmkit.compat.zero_copy_ipc import ZeroCopyDict``.

* ``ZeroCopyDict.create(name, max_items=10000, heap_size=100 MiB)`` makes a
  new dict (``FileExistsError`` if ``name`` exists: a live segment is never
  truncated under the processes using it); ``ZeroCopyDict.attach(name)``
  opens one (``FileNotFoundError`` if absent).  ``max_items`` pre-sizes the
  table and ``heap_size`` is checked to be positive; neither is a limit (the
  segment grows on demand).
* ``close()`` closes the handle and, on the handle that created the dict,
  also removes its name (processes that have it open keep using it), so the
  ``with`` block cleans up as the original does.
* No lock, so no ``TimeoutError``: reads are lock-free and a writer killed
  at any instant never blocks the others.
* ``keys()``, ``values()``, ``items()`` return lists; ``stats()`` has
  ``used_slots``, ``load_factor``, ``heap_used`` (plus ``SharedDict.stats()``'s
  keys), ``gc_stats()`` has ``total_free_blocks`` and ``total_free_space``
  (freed blocks of the segment heap, ready for reuse).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..dict import SharedDict
from ..segment import Segment
from ._common import positive_int

__all__ = ["ZeroCopyDict"]

MiB = 1024 * 1024


class ZeroCopyDict(SharedDict):
    """A dict in shared memory: ``ZeroCopyDict.create(name)`` or
    ``ZeroCopyDict.attach(name)``."""

    __slots__ = ()

    @classmethod
    def create(cls, name: str, max_items: int = 10000, heap_size: int = 100 * MiB,
               slot_count: Optional[int] = None) -> "ZeroCopyDict":
        """A new, empty dict ``name`` (``FileExistsError`` if it exists).
        ``slot_count`` (default ``max_items``) pre-sizes the table."""
        positive_int("max_items", max_items)
        positive_int("heap_size", heap_size)
        if slot_count is not None:
            positive_int("slot_count", slot_count)
        self = cls.__new__(cls)
        SharedDict.__init__(self, name, create=True, capacity=slot_count or max_items)
        return self

    @classmethod
    def attach(cls, name: str) -> "ZeroCopyDict":
        """The existing dict ``name`` (``FileNotFoundError`` if absent)."""
        self = cls.__new__(cls)
        SharedDict.__init__(self, name, create=False)
        return self

    def close(self) -> None:
        """Close this handle; on the creating handle, also remove the name."""
        if not self.closed and self.created:
            try:
                self.unlink()
            except FileNotFoundError:
                pass
        super().close()

    def keys(self) -> List[Any]:  # type: ignore[override]
        return self._keys()

    def values(self) -> List[Any]:  # type: ignore[override]
        return self._values()

    def items(self) -> List[Tuple[Any, Any]]:  # type: ignore[override]
        return self._items()

    def stats(self) -> Dict[str, Any]:
        """``SharedDict.stats()`` plus zero-copy-ipc's keys: ``name``,
        ``used_slots`` (the number of entries), ``slot_count`` (table slots;
        ``load_factor`` also counts the slots deleted entries left),
        ``heap_size`` (bytes backed now; it grows), ``is_owner`` (this
        handle created the dict)."""
        st = super().stats()
        st.update(name=self.segment_name, used_slots=st["entries"],
                  slot_count=st["capacity"], heap_size=st["segment_size"],
                  is_owner=self.created)
        return st

    def gc_stats(self) -> Dict[str, Any]:
        """Free blocks of the segment heap (``Segment.heap_check()``, a walk
        of the heap; on its free lists or in a process's cache):
        ``total_free_blocks`` and ``total_free_space`` (bytes
        in them), as the README names them, and as zero-copy-ipc 1.0.1 names
        them ``free_blocks``, ``free_size``, ``heap_used``, ``heap_size``
        and ``fragmentation`` (free-block bytes / bytes not in use)."""
        with Segment(self.segment_name, create=False) as seg:
            h = seg.heap_check()
            info = seg.info()
        # blocks waiting in the processes' caches are free blocks too
        free = h["free_list_bytes"] + h["cached_bytes"]
        nfree = h["free_blocks"] + h["cached_blocks"]
        idle = free + h["untouched_bytes"]
        return {"total_free_blocks": nfree, "total_free_space": free,
                "free_blocks": nfree, "free_size": free,
                "heap_used": info["heap_used"], "heap_size": info["file_size"],
                "fragmentation": free / idle if idle else 0.0}

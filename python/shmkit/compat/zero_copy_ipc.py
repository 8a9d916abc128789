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

from typing import Any, Dict, List, Tuple

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
    def create(cls, name: str, max_items: int = 10000,
               heap_size: int = 100 * MiB) -> "ZeroCopyDict":
        """A new, empty dict ``name`` (``FileExistsError`` if it exists)."""
        positive_int("max_items", max_items)
        positive_int("heap_size", heap_size)
        self = cls.__new__(cls)
        SharedDict.__init__(self, name, create=True, capacity=max_items)
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
        """``SharedDict.stats()`` plus ``used_slots``: the number of entries
        (``load_factor`` also counts the slots deleted entries left)."""
        st = super().stats()
        st["used_slots"] = st["entries"]
        return st

    def gc_stats(self) -> Dict[str, int]:
        """Free blocks of the segment heap: ``total_free_blocks``,
        ``total_free_space`` (bytes in them) and ``untouched_bytes`` (heap
        never handed out yet).  Walks the heap."""
        with Segment(self.segment_name, create=False) as seg:
            h = seg.heap_check()
        return {"total_free_blocks": h["free_blocks"],
                "total_free_space": h["free_list_bytes"],
                "untouched_bytes": h["untouched_bytes"]}

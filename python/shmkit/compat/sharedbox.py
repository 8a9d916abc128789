"""The ``sharedbox`` package's (0.2) ``SharedDict`` API over :class:`shmkit.SharedDict`.

Replace ``from sharedbox import SharedDict`` by
``from shmkit.compat.sharedbox import SharedDict``.

* ``SharedDict(name, data=None, *, size=128 MiB, create=True, max_keys=128)``:
  ``create=True`` opens ``name`` or creates it, ``create=False`` requires an
  existing one (``SegmentNotFoundError``, both the ``RuntimeError`` sharedbox
  raises and a ``FileNotFoundError``).  ``size`` and ``max_keys`` are
  checked to be positive but are not limits: the segment grows on demand
  (``max_keys`` pre-sizes the table).
* Keys are ``str`` (``TypeError`` otherwise, as documented); a value that
  cannot be pickled, or a stored pickle that cannot be loaded, is a
  ``ValueError``.  numpy arrays are stored raw, never pickled.
* ``keys()``, ``values()``, ``items()`` return lists; ``keys_atomic()`` is
  a consistent snapshot of the keys (all shards frozen meanwhile).
* ``get_stats()`` and ``recommend_sizing(target_entries)`` measure every
  entry (``sample_size`` is the number of entries), walking the dict with
  writers held off meanwhile.
* ``unlink()`` requires ``close()`` first (``RuntimeError`` otherwise).
"""
from __future__ import annotations

import pickle
from typing import Any, Dict, List, Optional, Tuple

from .. import _shmkit
from .. import unlink as _unlink
from ..dict import SharedDict as _SharedDict
from ._common import positive_int

__all__ = ["SharedDict", "SegmentNotFoundError"]

MiB = 1024 * 1024
_MISSING = object()
_DECODE_ERRORS = (pickle.UnpicklingError, AttributeError, ImportError, EOFError)
_ENCODE_ERRORS = (pickle.PicklingError, TypeError, AttributeError)


class SegmentNotFoundError(FileNotFoundError, RuntimeError):
    """No segment of that name (``create=False``)."""


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"SharedDict keys must be str, not {type(key).__name__}")


class SharedDict(_SharedDict):
    """SharedDict(name, data=None, *, size=128 MiB, create=True, max_keys=128)"""

    __slots__ = ()

    def __init__(self, name: str, data: Optional[dict] = None, *, size: int = 128 * MiB,
                 create: bool = True, max_keys: int = 128) -> None:
        positive_int("size", size)
        positive_int("max_keys", max_keys)
        try:
            super().__init__(name, data, create=None if create else False, capacity=max_keys)
        except FileNotFoundError as e:
            raise SegmentNotFoundError(e.errno, f"no shared dict named {name!r} "
                                       f"(create=True makes it)") from None

    # ---- str keys only; (de)serialization errors are ValueError ----

    def __getitem__(self, key: str) -> Any:
        _check_key(key)
        try:
            return super().__getitem__(key)
        except _DECODE_ERRORS as e:
            raise ValueError(f"cannot deserialize the value of {key!r}: {e}") from e

    def get(self, key: str, default: Any = None) -> Any:
        _check_key(key)
        try:
            return super().get(key, default)
        except _DECODE_ERRORS as e:
            raise ValueError(f"cannot deserialize the value of {key!r}: {e}") from e

    def __setitem__(self, key: str, value: Any) -> None:
        _check_key(key)
        try:
            super().__setitem__(key, value)
        except _ENCODE_ERRORS as e:
            raise ValueError(f"cannot serialize the value for {key!r}: {e}") from e

    def __delitem__(self, key: str) -> None:
        _check_key(key)
        super().__delitem__(key)

    def __contains__(self, key: object) -> bool:
        _check_key(key)
        return super().__contains__(key)

    # ---- listing ----

    def keys(self) -> List[str]:  # type: ignore[override]
        return self._keys()

    def values(self) -> List[Any]:  # type: ignore[override]
        return self._values()

    def items(self) -> List[Tuple[str, Any]]:  # type: ignore[override]
        return self._items()

    def keys_atomic(self) -> List[str]:
        """Every key at one instant (all shards frozen while they are read)."""
        return self._snapshot(False)

    # ---- lifetime ----

    def is_closed(self) -> bool:
        return self.closed

    def unlink(self) -> None:
        """Remove the segment; only after ``close()`` (``RuntimeError``
        otherwise).  Removing one that is already gone does nothing."""
        if not self.closed:
            raise RuntimeError("close() this SharedDict before unlink()")
        try:
            _unlink(self.segment_name)
        except FileNotFoundError:
            pass

    # ---- statistics ----

    def get_stats(self) -> Dict[str, Any]:
        """``total_entries``, ``sample_size``, ``avg_key_utf8_bytes``,
        ``avg_value_pickle_bytes`` (the stored size: raw for str, bytes,
        numbers and arrays, the pickle otherwise), ``estimated_data_bytes``,
        ``segment_name``."""
        st = self.check()
        n = st["entries"]
        return {"total_entries": n, "sample_size": n,
                "avg_key_utf8_bytes": st["key_bytes"] / n if n else 0.0,
                "avg_value_pickle_bytes": st["value_bytes"] / n if n else 0.0,
                "estimated_data_bytes": st["key_bytes"] + st["value_bytes"],
                "segment_name": self.segment_name}

    def recommend_sizing(self, target_entries: int) -> Dict[str, Any]:
        """``current_stats`` (``get_stats()``), ``target_entries``,
        ``sizing_recommendation`` and ``lock_recommendation``, with the keys
        of sharedbox 0.2.4 and the README's ``total_segment_size``.  The size
        is ``SharedDict.recommend_size``'s; the locks are shmkit's fixed
        shards (writers publish with a compare-and-swap, so there is nothing
        to tune)."""
        advice = self.recommend_size(target_entries)
        current = self.get_stats()
        size = advice["size"]
        data = int(target_entries * (current["avg_key_utf8_bytes"]
                                     + current["avg_value_pickle_bytes"]))
        shards = _shmkit.DICT_SHARDS
        return {
            "current_stats": current,
            "target_entries": target_entries,
            "sizing_recommendation": {
                "total_segment_size": size,
                "recommended_size_bytes": size,
                "recommended_size_pow2_bytes": 1 << max(size - 1, 1).bit_length(),
                "data_bytes": data,
                "entry_overhead_bytes": max(size - data, 0),
                "locks_overhead_bytes": 0,
                "safety_margin": 1.0,
            },
            "lock_recommendation": {
                "recommended_lock_count": shards,
                "actual_entries_per_lock": target_entries / shards,
                "lock_memory_kb": 0,
                "rationale": "shmkit's dict has a fixed number of shards; reads take no "
                             "lock and writes publish with a compare-and-swap",
            },
        }

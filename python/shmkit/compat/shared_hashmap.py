"""The ``shared-hashmap`` package's API over :class:`shmkit.SharedDict`.

Replace ``from shared_hashmap import SharedHashMap`` by
``from shmkit.compat.shared_hashmap import SharedHashMap``.

``capacity``, ``max_key_size`` and ``max_value_size`` are accepted and
checked to be positive ints but are not limits: the dict grows on demand and
holds keys and values of any size (``capacity`` pre-sizes its table).
Concurrent writers never lose each other's updates.  Keys are ``str``,
``bytes``, ``int`` or tuples of those (``TypeError`` otherwise); values are
anything picklable, ``str``/``bytes``/``int``/``float``/``None`` stored
without pickle.  It also has the whole ``SharedDict`` API (``len``,
iteration, ``incr``, ...).
"""
from __future__ import annotations

from typing import Any

from ..dict import SharedDict
from ._common import positive_int

__all__ = ["SharedHashMap"]


class SharedHashMap(SharedDict):
    """SharedHashMap(name, capacity=1024, max_key_size=256, max_value_size=1024, create=True)

    ``create=True`` makes a new map (``FileExistsError`` if ``name`` exists);
    ``create=False`` attaches to an existing one (``FileNotFoundError`` if
    there is none).  A context manager: leaving the ``with`` block closes
    this handle.
    """

    __slots__ = ()

    def __init__(self, name: str, capacity: int = 1024, max_key_size: int = 256,
                 max_value_size: int = 1024, create: bool = True) -> None:
        positive_int("capacity", capacity)
        positive_int("max_key_size", max_key_size)
        positive_int("max_value_size", max_value_size)
        create = bool(create)
        super().__init__(name, create=create, capacity=capacity if create else 0)

    def set(self, key: Any, value: Any) -> None:
        """Set ``key`` to ``value``."""
        self[key] = value

    def delete(self, key: Any) -> bool:
        """Remove ``key``: ``True`` if it was there, ``False`` if not."""
        try:
            del self[key]
        except KeyError:
            return False
        return True

    def size(self) -> int:
        """The number of keys."""
        return len(self)

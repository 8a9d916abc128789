"""Bitset: a fixed-length bitset in shared memory with atomic bit operations.

Standalone, ``Bitset("flags", 1_000_000)`` makes (or opens) a segment named
``flags`` holding one bitset called ``"bitset"``; inside a segment,
``seg.bitset("flags", 1_000_000)``.  Attaching needs only the name.

``set(i)``, ``clear(i)``, ``flip(i)`` and ``test(i)`` are single atomic
instructions that return the bit's previous value, so any number of
processes may use them at once (``set(i)`` returning ``False`` means *this*
call set it: a process-safe claim).  Whole-set operations (``count``,
``any``, ``all``, ``find_first_*``, ``set_all``, ``clear_all``) go word by
word: each word atomically, the set as a whole not as a snapshot.

``find_first_set()`` / ``find_first_clear()`` return ``None`` when there is
no such bit (not -1, which would silently index the last bit).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from . import _shmkit
from ._handle import Handle
from .remote import open_remote
from .segment import Segment, Trust, register_kind

__all__ = ["Bitset"]

STANDALONE_OBJECT = "bitset"
_SEGMENT_SLACK = 1 << 20


class Bitset(Handle, _shmkit.Bitset):
    """Bitset(name, length=None, *, create=None, mode=0o600, max_size=0, trust="owner")

    A bitset of ``length`` bits (all clear when created) in the shared-memory
    segment ``name``.  ``create=None`` opens it or creates it, ``True``
    requires a new segment (``FileExistsError``), ``False`` an existing one
    (``FileNotFoundError``).  ``length`` is needed only to create; when given
    on attach it must match (``ValueError``).

    Indexing follows lists (``b[i]``, ``b[-1]``, ``b[i] = True``; slices read
    as lists of bools); out of range is ``IndexError``.  ``len(b)`` is the
    number of bits, ``b.length``.  ``as_numpy()`` is a zero-copy ``uint64`` view of the
    words (bit ``i`` is bit ``i % 64`` of word ``i // 64``).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, url: Optional[str] = None, **kwargs: Any):
        # url= or SHMKIT_URL: the same structure on a Redis/Valkey server
        other = open_remote("bitset", url, args, kwargs)
        return other if other is not None else _shmkit.Bitset.__new__(cls)

    def __init__(self, name: str, length: Optional[int] = None, *,
                 create: Optional[bool] = None, mode: int = 0o600,
                 max_size: int = 0, url: Optional[str] = None, trust: Trust = "owner") -> None:
        if create is True and length is None:
            raise ValueError("length= is required to create a Bitset")
        seg_size = 0
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int):
                raise TypeError(f"length must be an int, not {type(length).__name__}")
            if not 0 < length <= _shmkit.BITSET_MAX_BITS:
                raise ValueError(f"length must be between 1 and {_shmkit.BITSET_MAX_BITS} bits")
        if length is not None and length > 8 << 20:
            seg_size = length // 8 + _SEGMENT_SLACK
            if max_size and seg_size > max_size:
                seg_size = max_size
        with Segment(name, size=seg_size, create=create, mode=mode,
                     max_size=max_size, trust=trust) as seg:
            try:
                super().__init__(seg, STANDALONE_OBJECT, length)
            except BaseException:
                if seg.created:      # do not leave a half-made segment behind
                    seg.unlink()
                raise

    @classmethod
    def _open_in(cls, segment: Segment, name: str, length: Optional[int] = None) -> "Bitset":
        self = _shmkit.Bitset.__new__(cls)
        _shmkit.Bitset.__init__(self, segment, name, length)
        return self

    # ---- conveniences (not on the hot path) -----------------------------------

    def as_numpy(self):
        """A writable ``numpy.ndarray`` of dtype ``uint64`` over the words
        themselves (zero copy; it keeps the mapping alive).  Plain numpy
        writes are not atomic: use them only while no other process writes."""
        import numpy as np

        return np.asarray(memoryview(self))

    def to_numpy(self):
        """A ``numpy`` bool array with one element per bit (a copy)."""
        import numpy as np

        words = self.as_numpy()
        return np.unpackbits(words.view(np.uint8), bitorder="little")[: self.length].astype(bool)

    def iter_set(self, start: int = 0) -> Iterator[int]:
        """Yield the index of every set bit at or after ``start``, in order."""
        i = self.find_first_set(start)
        while i is not None:
            yield i
            i = self.find_first_set(i + 1)

    def __repr__(self) -> str:
        where = f"{self.segment_name!r}/{self.object_name!r}"
        if self.closed:
            return f"<shmkit.Bitset {where} closed>"
        return f"<shmkit.Bitset {where} length={self.length} count={self.count()}>"


register_kind("bitset", Bitset)

"""Bitset on a Redis/Valkey server: one string.

The server numbers bits from the high bit of each byte; shmkit numbers bit
``i`` as bit ``i % 8`` (from the low bit) of byte ``i // 8``, which is what
the little-endian words of shared memory hold.  Bit ``i`` is therefore
server offset ``8 * (i // 8) + 7 - i % 8``, and the string's bytes are the
same bytes as the shared-memory words.  ``set``/``clear`` = ``SETBIT``
(returns the old bit), ``test`` = ``GETBIT``, ``flip`` = ``BITFIELD ...
OVERFLOW WRAP INCRBY u1``, ``count`` = ``BITCOUNT``, ``find_first_*`` = one
Lua script around ``BITPOS``.  At most 2**32 bits (a server string holds
512 MiB).
"""
from __future__ import annotations

from typing import Any, Optional

from .. import _shmkit
from ..bitset import Bitset
from . import register_remote
from ._base import RemoteHandle, seq_index, translating

__all__ = ["RedisBitset", "MAX_BITS"]

MAX_BITS = 1 << 32
_CHUNK = 1 << 20

# KEYS[1] string; ARGV: bit (0/1), start, size.  The first index >= start
# (shmkit numbering) holding that bit, or -1.
_FIND = """
local want, start, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function scan(byte, from)
  local b = string.byte(redis.call('GETRANGE', KEYS[1], byte, byte) .. '\\0')
  if want == 0 then b = 255 - b end
  for j = from, 7 do
    if bit.band(b, bit.lshift(1, j)) ~= 0 then return byte * 8 + j end
  end
  return -1
end
local b0 = math.floor(start / 8)
local r = scan(b0, start % 8)
if r >= 0 then return r end
local pos = redis.call('BITPOS', KEYS[1], want, b0 + 1)
if pos < 0 then return -1 end
return scan(math.floor(pos / 8), 0)
"""


def _off(i: int) -> int:
    return (i & ~7) | (7 - (i & 7))


@translating
class RedisBitset(RemoteHandle):
    """A shmkit.Bitset kept in a Redis/Valkey string (see docs/redis.md)."""

    kind = "bitset"
    noun = "Bitset"

    def __init__(self, name: str, length: Optional[int] = None, *,
                 create: Optional[bool] = None, mode: int = 0o600,
                 max_size: int = 0, url: str, trust: str = "owner") -> None:
        if create is True and length is None:
            raise ValueError("length= is required to create a Bitset")
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int):
                raise TypeError(f"length must be an int, not {type(length).__name__}")
            if not 0 < length <= MAX_BITS:
                raise ValueError(f"length must be between 1 and {MAX_BITS} bits on a Redis/"
                                 "Valkey server (a string holds at most 512 MiB)")
        self._setup(name, url)
        if length is None:
            if create is not False:
                create = False   # attach only: nothing to create without a length
        # the server's meta field is "size" (the stored format)
        meta = self._open(create, {"size": length} if length is not None else {})
        have = int(meta["size"])
        if length is not None and have != length:
            raise ValueError(f"Bitset {name!r} exists with length {have}, not {length}")
        self.length = have

    def _state(self):
        return {"length": self.length}

    def _restore(self, state):
        self.length = state["length"]

    def _index(self, i: Any) -> int:
        return seq_index(i, self.length, "Bitset", "Bitset indices must be integers")

    # ---- one bit ----

    def set(self, i) -> bool:
        """Atomically set bit i; returns its previous value."""
        return bool(self._r.setbit(self._key, _off(self._index(i)), 1))

    def clear(self, i) -> bool:
        """Atomically clear bit i; returns its previous value."""
        return bool(self._r.setbit(self._key, _off(self._index(i)), 0))

    def flip(self, i) -> bool:
        """Atomically invert bit i; returns its previous value."""
        new = self._r.execute_command("BITFIELD", self._key, "OVERFLOW", "WRAP",
                                      "INCRBY", "u1", _off(self._index(i)), 1)[0]
        return not new

    def test(self, i) -> bool:
        return bool(self._r.getbit(self._key, _off(self._index(i))))

    def __len__(self) -> int:
        self._r
        return self.length

    def __getitem__(self, i):
        if isinstance(i, slice):
            idx = range(*i.indices(self.length))
            data = self._bytes()
            return [bool(data[j >> 3] >> (j & 7) & 1) for j in idx]
        return self.test(i)

    def __setitem__(self, i, v) -> None:
        if isinstance(i, slice):
            raise TypeError("Bitset slices are read-only (set bits one by one)")
        if isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)):
            pass
        elif isinstance(v, int):
            raise ValueError("a bit must be 0 or 1")
        else:
            raise TypeError(f"a bit must be a bool or 0/1, not {type(v).__name__}")
        self._r.setbit(self._key, _off(self._index(i)), int(v))

    def __delitem__(self, i) -> None:
        raise TypeError("Bitset bits cannot be deleted (use clear(i))")

    # ---- the whole set ----

    def count(self) -> int:
        return self._r.bitcount(self._key)

    def any(self) -> bool:
        return self.count() > 0

    def all(self) -> bool:
        return self.count() == self.length

    def clear_all(self) -> None:
        self._r.delete(self._key)

    def set_all(self) -> None:
        full, rest = divmod(self.length, 8)
        p = self._r.pipeline(transaction=True)
        for at in range(0, full, _CHUNK):
            p.setrange(self._key, at, b"\xff" * min(_CHUNK, full - at))
        if rest:
            p.setrange(self._key, full, bytes([(1 << rest) - 1]))
        p.execute()

    def _find(self, want: int, args: tuple) -> Optional[int]:
        if len(args) > 1:
            raise TypeError("takes at most 1 argument (start)")
        start = args[0] if args else 0
        if isinstance(start, bool) or not hasattr(start, "__index__"):
            raise TypeError(f"start must be an int, not {type(start).__name__}")
        start = max(start.__index__(), 0)
        if start >= self.length:
            self._r
            return None
        r = self._script(_FIND)(keys=[self._key], args=[want, start, self.length])
        return r if 0 <= r < self.length else None     # past the end: none

    def find_first_set(self, *start) -> Optional[int]:
        """The first set bit at or after start, or None."""
        return self._find(1, start)

    def find_first_clear(self, *start) -> Optional[int]:
        """The first clear bit at or after start, or None."""
        return self._find(0, start)

    # ---- copies (a server has no memory to share) ----

    def _bytes(self) -> bytes:
        nbytes = (self.length + 63) // 64 * 8
        data = self._r.get(self._key) or b""
        if len(data) > nbytes:
            raise _shmkit.CorruptSegmentError(
                f"Bitset {self.segment_name!r}: the server string holds {len(data)} bytes, "
                f"more than {nbytes}")
        return data + bytes(nbytes - len(data))

    def words(self) -> memoryview:
        """A memoryview (format 'Q') of a copy of the 64-bit words; bit i is
        bit i % 64 of word i // 64."""
        return memoryview(bytearray(self._bytes())).cast("Q")

    def as_numpy(self):
        """A ``uint64`` numpy array: a copy of the words (on a server
        writing it changes nothing)."""
        import numpy as np

        return np.frombuffer(bytearray(self._bytes()), dtype="<u8")

    # the same code as the shared-memory Bitset
    to_numpy = Bitset.to_numpy
    iter_set = Bitset.iter_set

    def check(self) -> dict:
        data = self._bytes()
        # no bit past the end may be set
        full, rest = divmod(self.length, 8)
        tail = data[full:]
        if tail and (tail[0] >> rest if rest else tail[0]) or any(tail[1:]):
            raise _shmkit.CorruptSegmentError(
                f"Bitset {self.segment_name!r}: bits past the end are set")
        return {"length": self.length, "words": len(data) // 8, "count": self.count()}

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Bitset {self.segment_name!r} at {self.url!r} closed>"
        return f"<shmkit.Bitset {self.segment_name!r} at {self.url!r} length={self.length} " \
               f"count={self.count()}>"


register_remote("bitset", RedisBitset)

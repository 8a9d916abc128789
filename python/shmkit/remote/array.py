"""Array on a Redis/Valkey server: one string of ``length * itemsize``
bytes, each element big-endian (the order of ``BITFIELD``).

Integer ``add`` is ``BITFIELD ... OVERFLOW FAIL INCRBY`` (checked: the
server refuses an overflowing add and leaves the element) or ``OVERFLOW
WRAP``; ``exchange`` is ``BITFIELD ... SET`` (which returns the old value).
uint64 goes through ``i64`` with the bits reinterpreted.  The rest -- float
add, compare_and_swap, checked uint64 add, adds beyond int64 -- read the
element's bytes and commit with one Lua script that compares and sets the
raw bytes (retrying if another writer came first); Lua never sees an int64
as a number.
"""
from __future__ import annotations

import math
import struct
from typing import Any, List, Optional, Union

from .. import _shmkit
from ..array import _FORMATS, DTYPES, Array
from . import register_remote
from ._base import RemoteHandle, seq_index, translating

__all__ = ["RedisArray"]

Number = Union[int, float]
_NAMES = {code: name for name, code in DTYPES.items()}
MAX_BYTES = 512 << 20

# KEYS[1] string; ARGV: offset, expected bytes, new bytes.  1 if set, else
# the current bytes.
_CAS_RANGE = """
local off = tonumber(ARGV[1])
local cur = redis.call('GETRANGE', KEYS[1], off, off + #ARGV[2] - 1)
if #cur < #ARGV[2] then cur = cur .. string.rep('\\0', #ARGV[2] - #cur) end
if cur == ARGV[2] then
  redis.call('SETRANGE', KEYS[1], off, ARGV[3])
  return 1
end
return cur
"""


@translating
class RedisArray(RemoteHandle):
    """A shmkit.Array kept in a Redis/Valkey string (see docs/redis.md)."""

    kind = "array"
    noun = "Array"

    def __init__(self, name: str, dtype: Any = None, length: Optional[int] = None, *,
                 create: Optional[bool] = None, mode: int = 0o600, max_size: int = 0,
                 url: str, trust: str = "owner") -> None:
        code, n = Array._parse(dtype, length)
        if create is True and not code:
            raise ValueError("dtype and length are required to create an Array")
        if code and n * struct.calcsize(_FORMATS[code]) > MAX_BYTES:
            raise ValueError(f"an Array on a Redis/Valkey server holds at most {MAX_BYTES} "
                             "bytes (a server string's limit)")
        self._setup(name, url)
        if not code and create is not False:
            create = False
        meta = self._open(create, {"dtype": _NAMES[code], "length": n} if code else {})
        self._init_type(DTYPES[meta["dtype"]], int(meta["length"]))
        if code and (code, n) != (self.dtype_code, self.length):
            raise ValueError(f"Array {name!r} exists as {self.dtype}[{self.length}], "
                             f"not {_NAMES[code]}[{n}]")
        if self.created:
            self._r.setrange(self._key, self.nbytes - 1, b"\0")

    def _init_type(self, code: int, length: int) -> None:
        self.dtype_code = code
        self.dtype = _NAMES[code]
        self.format = _FORMATS[code]
        self.itemsize = struct.calcsize(self.format)
        self.length = length
        self.nbytes = length * self.itemsize
        self._is_float = self.format in "fd"
        self._signed = self.format in "bhiq"
        bits = 8 * self.itemsize
        self._lo = -(1 << (bits - 1)) if self._signed else 0
        self._hi = (1 << (bits - 1)) - 1 if self._signed else (1 << bits) - 1
        self._be = struct.Struct(">" + self.format)
        # the BITFIELD type: uint64 has none, so it goes through i64
        self._bf = ("i" if self._signed or bits == 64 else "u") + str(bits)

    def _state(self):
        return {"code": self.dtype_code, "length": self.length}

    def _restore(self, state):
        self._init_type(state["code"], state["length"])

    # ---- conversions (the shared-memory Array's rules) ----

    def _index(self, i: Any) -> int:
        return seq_index(i, self.length, "Array", "Array indices must be integers or slices")

    def _scalar(self, v: Any) -> Number:
        """v as this array's kind (TypeError), range-checked (OverflowError)."""
        if self._is_float:
            if not (isinstance(v, float) or hasattr(v, "__index__") or hasattr(v, "__float__")):
                raise TypeError(f"{self.dtype} elements must be real numbers, "
                                f"not {type(v).__name__}")
            return float(v)
        if not hasattr(v, "__index__"):
            raise TypeError(f"{self.dtype} elements must be integers, not {type(v).__name__}")
        x = v.__index__()
        if not self._lo <= x <= self._hi:
            raise OverflowError(f"{v!r} is out of range for {self.dtype}")
        return x

    def _pack(self, x: Number) -> bytes:
        if self.format == "f":
            try:
                return self._be.pack(x)
            except OverflowError:     # beyond float32: inf, as a C cast gives
                return self._be.pack(math.copysign(math.inf, x))
        return self._be.pack(x)

    def _unpack(self, raw: bytes) -> Number:
        return self._be.unpack(raw.ljust(self.itemsize, b"\0"))[0]

    def _from_i64(self, x: int) -> int:
        """A BITFIELD i64 reply as this array's element (uint64: the bits)."""
        return x & 0xFFFFFFFFFFFFFFFF if self.format == "Q" else x

    def _to_field(self, x: int) -> int:
        """An element as a BITFIELD argument (uint64: the same bits as i64)."""
        if self.format == "Q" and x > 0x7FFFFFFFFFFFFFFF:
            return x - (1 << 64)
        return x

    # ---- elements ----

    def _get(self, i: int) -> Number:
        off = i * self.itemsize
        return self._unpack(self._r.getrange(self._key, off, off + self.itemsize - 1))

    def __len__(self) -> int:
        self._r
        return self.length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.tolist()[i]
        return self._get(self._index(i))

    def __setitem__(self, i, v) -> None:
        if isinstance(i, slice):
            start, stop, step = i.indices(self.length)
            idx = range(start, stop, step)
            vals = list(v) if not isinstance(v, (str, bytes)) else None
            if vals is None:
                raise TypeError("can only assign an iterable to an Array slice")
            if len(vals) != len(idx):
                raise ValueError(f"cannot assign {len(vals)} values to a slice of {len(idx)} "
                                 "elements (an Array's length is fixed)")
            raws = [self._pack(self._scalar(x)) for x in vals]   # all checked first
            p = self._r.pipeline(transaction=False)
            if step == 1 and raws:
                p.setrange(self._key, start * self.itemsize, b"".join(raws))
            else:
                for j, raw in zip(idx, raws):
                    p.setrange(self._key, j * self.itemsize, raw)
            p.execute()
            return
        j = self._index(i)
        raw = self._pack(self._scalar(v))
        self._r.setrange(self._key, j * self.itemsize, raw)

    def __delitem__(self, i) -> None:
        raise TypeError("Array elements cannot be deleted (fixed length)")

    def _bitfield(self, *ops) -> list:
        return self._r.execute_command("BITFIELD", self._key, *ops)

    def _cas_raw(self, i: int, expected: bytes, new: bytes):
        return self._script(_CAS_RANGE)(keys=[self._key],
                                        args=[i * self.itemsize, expected, new])

    def _update(self, i: int, fn) -> Number:
        """Optimistic read-modify-write of element i with new = fn(old);
        returns old."""
        off = i * self.itemsize
        raw = self._r.getrange(self._key, off, off + self.itemsize - 1).ljust(
            self.itemsize, b"\0")
        while True:
            old = self._unpack(raw)
            res = self._cas_raw(i, raw, self._pack(fn(old)))
            if res == 1:
                return old
            raw = res

    def add(self, i, delta, wrap: bool = False) -> Number:
        """Atomic fetch-add; returns the previous value.  Integer arrays:
        OverflowError (element unchanged) if the result leaves the type's
        range, or modular arithmetic with wrap=True."""
        j = self._index(i)
        wrap = bool(wrap)
        if self._is_float:
            if wrap:
                raise TypeError("wrap=True is for integer arrays")
            d = self._scalar(delta)
            return self._update(j, lambda old: old + d)
        if not hasattr(delta, "__index__"):
            raise TypeError(f"delta must be an integer for {self.dtype}, "
                            f"not {type(delta).__name__}")
        d = delta.__index__()
        bits = 8 * self.itemsize
        if wrap:
            d &= (1 << bits) - 1
            if d >= 1 << (bits - 1) and (self._bf[0] == "i"):
                d -= 1 << bits
            new = self._bitfield("OVERFLOW", "WRAP", "INCRBY", self._bf, f"#{j}", d)[0]
            new = self._from_i64(new) if bits == 64 else new
            prev = (new - d) & ((1 << bits) - 1)
            if self._signed and prev > self._hi:
                prev -= 1 << bits
            return prev
        if self.format != "Q" and -(1 << 63) <= d < (1 << 63):
            new = self._bitfield("OVERFLOW", "FAIL", "INCRBY", self._bf, f"#{j}", d)[0]
            if new is not None:
                return new - d
        else:
            def fn(old):
                if not self._lo <= old + d <= self._hi:
                    raise OverflowError
                return old + d
            try:
                return self._update(j, fn)
            except OverflowError:
                pass
        raise OverflowError(f"adding {delta!r} to element {j} overflows {self.dtype} "
                            "(element unchanged)")

    def exchange(self, i, value) -> Number:
        """Atomic swap; returns the previous value."""
        j = self._index(i)
        v = self._scalar(value)
        if self._is_float:
            return self._update(j, lambda old: v)
        old = self._bitfield("SET", self._bf, f"#{j}", self._to_field(int(v)))[0]
        return self._from_i64(old) if self.itemsize == 8 else old

    def compare_and_swap(self, i, expected, new) -> bool:
        """Set element i to new if it equals expected (bitwise for floats)."""
        j = self._index(i)
        d = self._scalar(new)
        try:
            e = self._scalar(expected)
        except OverflowError:
            self._r
            return False     # an integer expected beyond the type never matches
        return self._cas_raw(j, self._pack(e), self._pack(d)) == 1

    def fill(self, value) -> None:
        raw = self._pack(self._scalar(value))
        self._r.set(self._key, raw * self.length)

    def _data(self) -> bytes:
        data = self._r.get(self._key) or b""
        if len(data) != self.nbytes:
            raise _shmkit.CorruptSegmentError(
                f"Array {self.segment_name!r}: the server string holds {len(data)} bytes, "
                f"not {self.nbytes}")
        return data

    def tolist(self) -> List[Number]:
        return list(struct.unpack(f">{self.length}{self.format}", self._data()))

    def as_numpy(self):
        """A numpy array: a copy of the elements (a server has no memory to
        share, so writing it changes nothing)."""
        import numpy as np

        return np.frombuffer(self._data(), dtype=">" + self.format).astype("=" + self.format)

    def check(self) -> dict:
        self._data()
        return {"dtype": self.dtype, "length": self.length, "itemsize": self.itemsize,
                "nbytes": self.nbytes}

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Array {self.segment_name!r} at {self.url!r} closed>"
        return f"<shmkit.Array {self.segment_name!r} at {self.url!r} dtype={self.dtype} " \
               f"length={self.length}>"


register_remote("array", RedisArray)

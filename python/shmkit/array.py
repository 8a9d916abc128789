"""Array: a typed fixed-length array in shared memory with atomic element
operations.

``Array("stats", "int64", 1000)`` makes (or opens) a segment named ``stats``
holding one array called ``"array"``; inside a segment,
``seg.array("stats", "float64", 1000)``.  Attaching needs only the name.

Element types: int8, int16, int32, int64, uint8, uint16, uint32, uint64,
float32, float64.  ``dtype`` may be one of those names, a numpy-style string
("i8", "<f4", "u2"...), a Python ``array``/``struct`` typecode ("q", "d",
"B"...), the Python types ``int`` (int64) and ``float`` (float64), or a
numpy dtype / scalar type.

Every element read and write is atomic; ``add``, ``exchange`` and
``compare_and_swap`` are atomic read-modify-writes.  Slices are sequences
of element operations (not one atomic step).  Conversions are strict: an
integer array takes ints (``TypeError`` for a float or str), and a value or
a sum outside the element type is ``OverflowError`` with the array
unchanged (``add(i, d, wrap=True)`` wraps instead).

The buffer protocol shares the memory: ``numpy.asarray(arr)`` and
``memoryview(arr)`` are zero-copy views with the right format, itemsize and
shape, and keep the mapping alive after ``close()``.
"""
from __future__ import annotations

import struct
import sys
from typing import Any, Optional, Union

from . import _shmkit
from ._handle import Handle
from .remote import open_remote
from .segment import Segment, Trust, register_kind

__all__ = ["Array", "DTYPES", "dtype_code"]

Number = Union[int, float]

STANDALONE_OBJECT = "array"
_SEGMENT_SLACK = 1 << 20

#: canonical dtype name -> code (as stored in shared memory)
DTYPES = {
    "int8": _shmkit.DT_INT8, "int16": _shmkit.DT_INT16,
    "int32": _shmkit.DT_INT32, "int64": _shmkit.DT_INT64,
    "uint8": _shmkit.DT_UINT8, "uint16": _shmkit.DT_UINT16,
    "uint32": _shmkit.DT_UINT32, "uint64": _shmkit.DT_UINT64,
    "float32": _shmkit.DT_FLOAT32, "float64": _shmkit.DT_FLOAT64,
}


def _build_aliases():
    by_kind = {}
    for name in DTYPES:
        kind = "f" if name.startswith("float") else "u" if name.startswith("u") else "i"
        bits = int("".join(c for c in name if c.isdigit()))
        by_kind[(kind, bits // 8)] = name
    aliases = {}
    for (kind, size), name in by_kind.items():
        aliases[f"{kind}{size}"] = name                 # numpy: i8, u2, f4
    # struct / array typecodes, sized for this platform ('l' is 8 bytes on
    # LP64 Linux, 4 on Windows)
    for code in "bBhHiIlLqQfd":
        kind = "f" if code in "fd" else "i" if code.islower() else "u"
        aliases[code] = by_kind[(kind, struct.calcsize(code))]
    aliases.update({"float": "float64", "double": "float64", "single": "float32",
                    "int": "int64", "uint": "uint64", "byte": "int8", "ubyte": "uint8",
                    "short": "int16", "ushort": "uint16", "longlong": "int64",
                    "ulonglong": "uint64"})
    return aliases


_ALIASES = _build_aliases()


def dtype_code(dtype: Any) -> int:
    """The shmkit dtype code of ``dtype`` (see the module docstring);
    ``TypeError`` / ``ValueError`` for anything else."""
    if dtype is int:
        return DTYPES["int64"]
    if dtype is float:
        return DTYPES["float64"]
    if not isinstance(dtype, str):
        module = getattr(type(dtype), "__module__", "") or ""
        if isinstance(dtype, type):
            module = dtype.__module__ or ""
        if module.split(".")[0] == "numpy" and "numpy" in sys.modules:
            import numpy as np

            try:
                dtype = np.dtype(dtype).str        # e.g. '<i8', '|u1'
            except TypeError:
                raise TypeError(f"unsupported dtype {dtype!r}") from None
        else:
            raise TypeError(f"dtype must be a str, int, float or numpy dtype, "
                            f"not {type(dtype).__name__}")
    s = dtype.strip()
    if s[:1] in "<=|":
        s = s[1:]
    elif s[:1] in ">!":
        if sys.byteorder != "big":
            raise ValueError(f"dtype {dtype!r}: only native (little-endian) byte order")
        s = s[1:]
    name = s if s in DTYPES else _ALIASES.get(s)
    if name is None:
        raise ValueError(f"unsupported dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _check_length(length: Any) -> int:
    if isinstance(length, bool) or not hasattr(length, "__index__"):
        raise TypeError(f"length must be an int, not {type(length).__name__}")
    length = length.__index__()
    if length <= 0:
        raise ValueError("length must be positive")
    return length


class Array(Handle, _shmkit.Array):
    """Array(name, dtype=None, length=None, *, create=None, mode=0o600, max_size=0, trust="owner")

    A typed array of ``length`` elements of ``dtype`` (all zero when
    created) in the shared-memory segment ``name``.  ``create=None`` opens
    or creates, ``True`` requires a new segment (``FileExistsError``),
    ``False`` an existing one (``FileNotFoundError``).  dtype and length are
    needed only to create; when given on attach they must match
    (``ValueError``).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, url: Optional[str] = None, **kwargs: Any):
        # url= or SHMKIT_URL: the same structure on a Redis/Valkey server
        other = open_remote("array", url, args, kwargs)
        return other if other is not None else _shmkit.Array.__new__(cls)

    def __init__(self, name: str, dtype: Any = None, length: Optional[int] = None, *,
                 create: Optional[bool] = None, mode: int = 0o600,
                 max_size: int = 0, url: Optional[str] = None, trust: Trust = "owner") -> None:
        code, n = self._parse(dtype, length)
        if create is True and not code:
            raise ValueError("dtype and length are required to create an Array")
        seg_size = 0
        if code:
            nbytes = n * struct.calcsize(_FORMATS[code])
            if nbytes > 512 << 10:
                seg_size = nbytes + _SEGMENT_SLACK
                if max_size and seg_size > max_size:
                    seg_size = max_size
        with Segment(name, size=seg_size, create=create, mode=mode,
                     max_size=max_size, trust=trust) as seg:
            try:
                super().__init__(seg, STANDALONE_OBJECT, code, n)
            except BaseException:
                if seg.created:      # do not leave a half-made segment behind
                    seg.unlink()
                raise

    @staticmethod
    def _parse(dtype: Any, length: Any):
        if dtype is None and length is None:
            return 0, 0
        if dtype is None or length is None:
            raise ValueError("give both dtype and length (to create), or neither (to attach)")
        code, n = dtype_code(dtype), _check_length(length)
        limit = _shmkit.ARRAY_MAX_BYTES // struct.calcsize(_FORMATS[code])
        if n > limit:
            raise ValueError(f"length must be at most {limit} for this dtype")
        return code, n

    @classmethod
    def _open_in(cls, segment: Segment, name: str, dtype: Any = None,
                 length: Optional[int] = None) -> "Array":
        code, n = cls._parse(dtype, length)
        self = _shmkit.Array.__new__(cls)
        _shmkit.Array.__init__(self, segment, name, code, n)
        return self

    # ---- conveniences -----------------------------------------------------------

    def as_numpy(self):
        """A writable ``numpy.ndarray`` over the elements themselves (zero
        copy; keeps the mapping alive).  numpy's own arithmetic on it is not
        atomic across processes: use ``add``/``exchange``/... for that."""
        import numpy as np

        return np.asarray(memoryview(self))

    def __repr__(self) -> str:
        where = f"{self.segment_name!r}/{self.object_name!r}"
        if self.closed:
            return f"<shmkit.Array {where} closed>"
        return f"<shmkit.Array {where} dtype={self.dtype} length={self.length}>"


_FORMATS = {code: fmt for code, fmt in zip(
    DTYPES.values(), ["b", "h", "i", "q", "B", "H", "I", "Q", "f", "d"])}

register_kind("array", Array)

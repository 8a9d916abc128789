"""The byte format of keys, values and items, in Python, for the Redis
backend: the same tagged bytes the C extension stores in shared memory
(python/shmkit/_ext/py_codec.c), so one value means the same
in both homes.  Never Python's ``hash()``.

Keys: one tag byte + bytes::

    's' str (UTF-8)   'b' bytes   'i' int as 8 bytes LE (int64 range)
    'I' other ints (decimal text)   't' tuple: each element as tag,
    u32 LE length, bytes.  bool keys are ints (True == 1, as in dict).

Values: tag byte + bytes::

    'n' None  'T' True  'F' False  'f' float (8 bytes LE)  's' str (UTF-8)
    'A' str, all ASCII  'b' bytes  'p' pickle  'I' big int (decimal)
    'a' numpy array: u32 header length H, u32 ndim, dtype.str NUL-padded to
        32 bytes, u64 shape[ndim], zero padding to H (a multiple of 16),
        then the C-order data.

One difference, so that the server's ``HINCRBY`` works on them: an int
value in the int64 range is stored on a server as its bare decimal text
(``b"42"``, ``b"-7"``) where shared memory stores ``'i'`` + 8 bytes.  No
tag is a digit or ``-``, so the first byte tells the two apart.  Queue and
stack items are ``'b'`` + the bytes, or ``'p'`` + a pickle.
"""
from __future__ import annotations

import pickle
import struct
import sys
from typing import Any, Tuple

from . import _shmkit

__all__ = ["encode_key", "decode_key", "encode_value", "decode_value",
           "encode_item", "decode_item", "INT64_MIN", "INT64_MAX"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_ARR_DTYPE_LEN = 32
_ARR_MAX_NDIM = 64
_DIGITS = frozenset(b"-0123456789")


def _corrupt(what: str) -> Exception:
    return _shmkit.CorruptSegmentError(f"SharedDict: {what}")


# ------------------------------------------------------------------- keys

def _key_parts(k: Any, depth: int) -> Tuple[bytes, bytes]:
    t = type(k)
    if t is str:
        return b"s", k.encode("utf-8")
    if t is bytes:
        return b"b", k
    if isinstance(k, int):          # int and bool (True == 1, as in dict)
        k = int(k)
        if INT64_MIN <= k <= INT64_MAX:
            return b"i", struct.pack("<q", k)
        return b"I", str(k).encode()
    if t is tuple:
        if depth > 32:
            raise TypeError("SharedDict key tuple nested too deeply")
        out = bytearray()
        for x in k:
            tag, body = _key_parts(x, depth + 1)
            if len(body) > 0xFFFFFFFF:
                raise ValueError("tuple key element too long")
            out += tag + struct.pack("<I", len(body)) + body
        return b"t", bytes(out)
    raise TypeError("SharedDict keys must be str, bytes, int or tuples of those, "
                    f"not {t.__name__}")


def encode_key(k: Any) -> bytes:
    """The stored form of dict key ``k`` (TypeError for other types)."""
    tag, body = _key_parts(k, 0)
    return tag + body


def _decode_key(tag: int, body: bytes, depth: int) -> Any:
    if tag == 0x73:     # 's'
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _corrupt("invalid UTF-8 key") from None
    if tag == 0x62:     # 'b'
        return body
    if tag == 0x69 and len(body) == 8:     # 'i'
        return struct.unpack("<q", body)[0]
    if tag == 0x49 and 0 < len(body) <= 100000:    # 'I'
        try:
            return int(body.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise _corrupt("malformed int") from None
    if tag == 0x74 and depth <= 32:   # 't'
        items, i, n = [], 0, len(body)
        while i < n:
            if n - i < 5:
                raise _corrupt("malformed tuple key")
            ln = struct.unpack_from("<I", body, i + 1)[0]
            if ln > n - i - 5:
                raise _corrupt("malformed tuple key")
            items.append(_decode_key(body[i], body[i + 5:i + 5 + ln], depth + 1))
            i += 5 + ln
        return tuple(items)
    raise _corrupt("unknown key type")


def decode_key(raw: bytes) -> Any:
    if not raw:
        raise _corrupt("empty key")
    return _decode_key(raw[0], raw[1:], 0)


# ----------------------------------------------------------------- values

def _encode_array(a: Any):
    """'a' + header + data for a plain-dtype ndarray, or None (pickle it)."""
    import numpy as np

    dt = a.dtype
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        return None
    ds = dt.str.encode()
    if len(ds) >= _ARR_DTYPE_LEN:
        return None
    try:
        data = np.ascontiguousarray(a).data.cast("B")
    except (TypeError, ValueError):   # no buffer export (e.g. datetime64)
        return None
    if a.ndim > _ARR_MAX_NDIM:
        return None
    h = (8 + _ARR_DTYPE_LEN + 8 * a.ndim + 15) & ~15
    hdr = bytearray(h)
    struct.pack_into("<II", hdr, 0, h, a.ndim)
    hdr[8:8 + len(ds)] = ds
    for i, s in enumerate(a.shape):
        struct.pack_into("<Q", hdr, 8 + _ARR_DTYPE_LEN + 8 * i, s)
    return b"a" + bytes(hdr) + data.tobytes()


def encode_value(v: Any, allow_pickle: bool = True) -> bytes:
    """The stored form of dict value ``v`` on a server (ints in the int64
    range as bare decimal text, see the module docstring)."""
    t = type(v)
    if t is str:
        return (b"A" if v.isascii() else b"s") + v.encode("utf-8")
    if t is int:
        if INT64_MIN <= v <= INT64_MAX:
            return str(v).encode()
        return b"I" + str(v).encode()
    if v is None:
        return b"n"
    if v is True:
        return b"T"
    if v is False:
        return b"F"
    if t is float:
        return b"f" + struct.pack("<d", v)
    if t is bytes:
        return b"b" + v
    np = sys.modules.get("numpy")
    if np is not None and t is np.ndarray:
        raw = _encode_array(v)
        if raw is not None:
            return raw
    if not allow_pickle:
        raise TypeError(f"SharedDict(allow_pickle=False) cannot store a {t.__name__} "
                        "(it would need pickle)")
    return b"p" + pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)


def _decode_array(body: bytes):
    import numpy as np

    n = len(body)
    if n < 8 + _ARR_DTYPE_LEN:
        raise _corrupt("malformed array value")
    h, ndim = struct.unpack_from("<II", body, 0)
    if ndim > _ARR_MAX_NDIM or h < 8 + _ARR_DTYPE_LEN + 8 * ndim or h > n or h % 16:
        raise _corrupt("malformed array value")
    dts = body[8:8 + _ARR_DTYPE_LEN].split(b"\0", 1)
    if len(dts) != 2:
        raise _corrupt("malformed array value")
    dt = np.dtype(dts[0].decode("ascii"))
    shape = struct.unpack_from(f"<{ndim}Q", body, 8 + _ARR_DTYPE_LEN)
    items = 1
    for s in shape:
        items *= s
    if items * dt.itemsize != n - h:
        raise _corrupt("malformed array value")
    return np.frombuffer(body, dtype=dt, count=items, offset=h).reshape(shape).copy()


def decode_value(raw: bytes, allow_pickle: bool = True) -> Any:
    """The value stored as ``raw`` (either form of int)."""
    if not raw:
        raise _corrupt("malformed value")
    tag = raw[0]
    if tag in _DIGITS:
        try:
            return int(raw)
        except ValueError:
            raise _corrupt("malformed int") from None
    body = raw[1:]
    if tag == 0x41 or tag == 0x73:   # 'A', 's'
        try:
            s = body.decode("ascii" if tag == 0x41 else "utf-8")
        except UnicodeDecodeError:
            raise _corrupt("invalid UTF-8 value") from None
        return s
    if tag == 0x62:                  # 'b'
        return body
    if tag == 0x66 and len(body) == 8:   # 'f'
        return struct.unpack("<d", body)[0]
    if tag == 0x69 and len(body) == 8:   # 'i' (the shared-memory form)
        return struct.unpack("<q", body)[0]
    if tag == 0x6E and not body:     # 'n'
        return None
    if tag == 0x54 and not body:     # 'T'
        return True
    if tag == 0x46 and not body:     # 'F'
        return False
    if tag == 0x49:                  # 'I'
        return _decode_key(tag, body, 0)
    if tag == 0x61:                  # 'a'
        return _decode_array(body)
    if tag == 0x70:                  # 'p'
        if not allow_pickle:
            raise TypeError("this value is pickled and allow_pickle=False")
        return pickle.loads(body)
    raise _corrupt("malformed value")


# ------------------------------------------------- queue and stack items

def encode_item(item: Any, allow_pickle: bool, noun: str) -> bytes:
    """'b' + bytes, or 'p' + the pickle of anything else."""
    if type(item) is bytes:
        return b"b" + item
    if not allow_pickle:
        raise TypeError(f"this {noun} takes bytes only (allow_pickle=False), "
                        f"not {type(item).__name__}")
    return b"p" + pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def item_is_pickle(raw: bytes) -> bool:
    return raw[:1] == b"p"


def decode_item(raw: bytes, noun: str) -> Any:
    tag = raw[:1]
    if tag == b"b":
        return raw[1:]
    if tag == b"p":
        return pickle.loads(raw[1:])
    raise _shmkit.CorruptSegmentError(f"{noun} item with unknown tag {raw[:1]!r}")

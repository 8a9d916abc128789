"""SharedDict on a Redis/Valkey server: one hash, fields and values in the
shared-memory byte format (shmkit._codec).

``incr`` is ``HINCRBY`` (ints are stored as decimal text for it), falling
back to read + compare-and-set for floats and ints beyond int64;
``compare_and_swap`` is one Lua script on the stored bytes (a mismatch
returns the current bytes, compared in Python with ``==`` as the
shared-memory dict does, and retried if equal); ``setdefault`` is
``HSETNX`` + ``HGET`` in one MULTI; ``pop`` is ``HGETDEL`` where the server
has it, else ``HGET`` + ``HDEL`` in one MULTI.  Iterating the dict walks it
with ``HSCAN`` (not a snapshot); ``keys()``/``values()``/``items()`` are
snapshots (``HKEYS``/``HVALS``/``HGETALL``).
"""
from __future__ import annotations

from collections.abc import KeysView, MutableMapping
from typing import Any, Iterable, Iterator, List, Optional

from .._codec import INT64_MAX, INT64_MIN, decode_key, decode_value, encode_key, encode_value
from ..dict import SharedDict, update_pairs
from . import register_remote
from ._base import RemoteHandle, translating

__all__ = ["RedisDict"]

_MISSING = object()
_BATCH = 1000

# KEYS[1] hash; ARGV: field, expected bytes, new bytes.  1 if stored, else
# {current} (a one-element table; empty when the field is absent).
_CAS = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
if cur then return {cur} end
return {}
"""


class _KeysView(KeysView):
    __slots__ = ()
    _mapping: "RedisDict"

    def __iter__(self):
        return iter(self._mapping._keys())


@translating
class RedisDict(RemoteHandle, MutableMapping):
    """A SharedDict kept in a Redis/Valkey hash (see shmkit.SharedDict and
    docs/redis.md).  ``size``, ``max_size``, ``capacity``, ``mode`` and
    ``trust`` mean nothing on a server and are ignored."""

    kind = "dict"
    noun = "SharedDict"

    def __init__(self, name: str, data: Any = None, *, create: Optional[bool] = None,
                 size: int = 0, max_size: int = 0, allow_pickle: bool = True,
                 capacity: int = 0, mode: int = 0o600, url: str,
                 trust: str = "owner") -> None:
        self._setup(name, url)
        self.allow_pickle = bool(allow_pickle)
        self._open(create, {})
        self._hgetdel: Optional[bool] = None
        if data is not None:
            self.update(data)

    def _state(self):
        return {"allow_pickle": self.allow_pickle}

    def _restore(self, state):
        self.allow_pickle = state["allow_pickle"]
        self._hgetdel = None

    def _dec(self, raw: bytes) -> Any:
        return decode_value(raw, self.allow_pickle)

    def _enc(self, v: Any) -> bytes:
        return encode_value(v, self.allow_pickle)

    # ---- one key ----

    def __getitem__(self, key):
        raw = self._r.hget(self._key, encode_key(key))
        if raw is None:
            raise KeyError(key)
        return self._dec(raw)

    def get(self, key, default=None):
        raw = self._r.hget(self._key, encode_key(key))
        return default if raw is None else self._dec(raw)

    def __setitem__(self, key, value) -> None:
        f, v = encode_key(key), self._enc(value)
        self._r.hset(self._key, f, v)

    def __delitem__(self, key) -> None:
        if not self._r.hdel(self._key, encode_key(key)):
            raise KeyError(key)

    def __contains__(self, key) -> bool:
        try:
            f = encode_key(key)
        except TypeError:
            return False     # a key of a type never stored is simply absent
        return bool(self._r.hexists(self._key, f))

    def __len__(self) -> int:
        return self._r.hlen(self._key)

    # ---- atomic read-modify-write ----

    def _cas_raw(self, f: bytes, expected: bytes, new: bytes):
        """True if stored; else the current bytes (None when absent)."""
        res = self._script(_CAS)(keys=[self._key], args=[f, expected, new])
        if res == 1:
            return True
        return res[0] if res else None

    def incr(self, key, delta=1):
        """Add ``delta`` to the number at ``key`` (absent: ``delta``) and
        return the new value; atomic across processes and machines."""
        if not isinstance(delta, (int, float)):
            raise TypeError("incr delta must be an int or a float")
        f = encode_key(key)
        if type(delta) is int and INT64_MIN <= delta <= INT64_MAX:
            from redis.exceptions import ResponseError

            try:
                return self._r.hincrby(self._key, f, delta)
            except ResponseError:
                pass         # not a decimal int, or beyond int64: the general path
        r = self._r
        while True:
            raw = r.hget(self._key, f)
            if raw is None:
                if r.hsetnx(self._key, f, self._enc(delta)):
                    return delta
                continue
            cur = self._dec(raw)
            if not (type(cur) is int or type(cur) is float):
                raise TypeError(f"incr: value of this key is a {type(cur).__name__}, "
                                "not a number")
            nv = cur + delta
            if self._cas_raw(f, raw, self._enc(nv)) is True:
                return nv

    def compare_and_swap(self, key, expected, new) -> bool:
        """Store ``new`` at ``key`` if its value equals ``expected``
        (``==``); True if it did."""
        f, nraw = encode_key(key), self._enc(new)
        try:
            eraw = self._enc(expected)
        except TypeError:
            eraw = None
        if eraw is not None and not (type(expected) is float and expected != expected):
            res = self._cas_raw(f, eraw, nraw)
        else:
            res = self._r.hget(self._key, f)
        while True:
            if res is True:
                return True
            if res is None:
                return False
            if not bool(self._dec(res) == expected):
                return False
            res = self._cas_raw(f, res, nraw)

    def setdefault(self, key, default=None):
        f, v = encode_key(key), self._enc(default)
        p = self._r.pipeline(transaction=True)
        p.hsetnx(self._key, f, v)
        p.hget(self._key, f)
        _, raw = p.execute()
        return self._dec(raw)

    def _has_hgetdel(self) -> bool:
        if self._hgetdel is None:
            try:
                info = self._r.execute_command("COMMAND", "INFO", "HGETDEL")
                self._hgetdel = bool(info and info[0])
            except Exception:
                self._hgetdel = False
        return self._hgetdel

    def _pop_raw(self, f: bytes) -> Optional[bytes]:
        if self._has_hgetdel():
            res = self._r.execute_command("HGETDEL", self._key, "FIELDS", 1, f)
            return res[0] if res else None
        p = self._r.pipeline(transaction=True)
        p.hget(self._key, f)
        p.hdel(self._key, f)
        return p.execute()[0]

    def pop(self, key, default=_MISSING):
        raw = self._pop_raw(encode_key(key))
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return self._dec(raw)

    def popitem(self):
        """Remove and return some (key, value); KeyError when empty."""
        while True:
            f = self._r.hrandfield(self._key)
            if f is None:
                raise KeyError("popitem(): dictionary is empty")
            raw = self._pop_raw(f)
            if raw is not None:
                return decode_key(f), self._dec(raw)

    def clear(self) -> None:
        self._r.delete(self._key)

    # ---- batches ----

    def update(self, other=(), /, **kw) -> None:
        """Like ``dict.update``: one ``HSET`` per 1,000 entries (each entry
        is stored atomically, not the batch)."""
        enc = {}
        for k, v in update_pairs(other, kw):
            enc[encode_key(k)] = self._enc(v)
        items = list(enc.items())
        if not items:
            self._r      # the closed check
            return
        p = self._r.pipeline(transaction=False)
        for i in range(0, len(items), _BATCH):
            p.hset(self._key, mapping=dict(items[i:i + _BATCH]))
        p.execute()

    def get_many(self, keys: Iterable, default=None) -> List[Any]:
        """The values of ``keys`` (``default`` for absent ones), in one
        ``HMGET``."""
        fields = [encode_key(k) for k in keys]
        if not fields:
            self._r
            return []
        return [default if raw is None else self._dec(raw)
                for raw in self._r.hmget(self._key, fields)]

    # ---- views and snapshots ----

    def _keys(self) -> list:
        return [decode_key(f) for f in self._r.hkeys(self._key)]

    def _values(self) -> list:
        return [self._dec(v) for v in self._r.hvals(self._key)]

    def _items(self) -> list:
        return [(decode_key(f), self._dec(v)) for f, v in self._r.hgetall(self._key).items()]

    def __iter__(self) -> Iterator:
        """Walks the hash with HSCAN: keys added or removed meanwhile may
        or may not be seen (not a snapshot; ``keys()`` is one)."""
        from ._base import translate_errors

        r = self._r
        cursor = 0
        while True:
            try:
                # whole pages (NOVALUES needs Redis 7.4 / Valkey 8)
                cursor, page = r.hscan(self._key, cursor, count=1000)
                fields = list(page)
            except Exception as e:
                raise translate_errors(e, self) from e
            for f in fields:
                yield decode_key(f)
            if cursor == 0:
                return

    def keys(self):
        return _KeysView(self)

    items = SharedDict.items
    values = SharedDict.values
    copy = SharedDict.copy

    def get_view(self, key):
        """A read-only copy (on a server there is no memory to view): an
        array for an array value, a memoryview for bytes and str."""
        raw = self._r.hget(self._key, encode_key(key))
        if raw is None:
            raise KeyError(key)
        tag = raw[:1]
        if tag == b"a":
            a = self._dec(raw)
            a.flags.writeable = False
            return a
        if tag in (b"b", b"s", b"A"):
            return memoryview(raw)[1:]
        raise TypeError("get_view needs a numpy array, bytes or str value")

    def stats(self) -> dict:
        return {"entries": len(self), "backend": "redis"}

    def check(self) -> dict:
        """Decode every key and value; CorruptSegmentError if one is not
        in shmkit's format.  Returns {'entries': n}."""
        n = 0
        for f, v in self._r.hgetall(self._key).items():
            decode_key(f)
            if v[:1] != b"p":
                self._dec(v)
            n += 1
        return {"entries": n}

    # the same code as the shared-memory dict (RedisDict is registered as
    # a SharedDict, so its isinstance checks take either)
    __eq__ = SharedDict.__eq__
    __ne__ = SharedDict.__ne__
    __repr__ = SharedDict.__repr__
    __hash__ = None  # type: ignore[assignment]

SharedDict.register(RedisDict)


register_remote("dict", RedisDict)

"""SharedDict: a dict shared by processes, with lock-free reads and no fixed size.

Standalone, ``SharedDict("name")`` is a segment ``name`` holding one dict
(called ``"dict"``); in a segment, ``seg.dict("d")``.  Any process that knows
the name can attach::

    from shmkit import SharedDict
    d = SharedDict("counters", create=True)
    d["hits"] = 0
    d.incr("hits")                         # atomic across processes

Keys: ``str``, ``bytes``, ``int`` (``bool`` counts as int, as in ``dict``),
and tuples of those.  Values: ``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes`` and numpy arrays are stored natively; anything else is
pickled -- unless ``allow_pickle=False``: such a handle never unpickles
(storing a value that needs pickle, or reading one another process stored,
is a ``TypeError`` that changes nothing).  **Unpickling can run arbitrary
code: anyone who can write the segment can make a pickled value run code in
every process that reads it.**  Use ``allow_pickle=False`` when the writers
are not trusted.

See docs/dict.md for the design and the guarantees.
"""
from __future__ import annotations

from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView
from typing import Any, Iterator, Optional

import time

from . import _async, _shmkit
from ._handle import Handle
from .remote import open_remote
from .segment import Segment, Trust, register_kind

__all__ = ["SharedDict", "Watch"]

_ANY = object()

STANDALONE_OBJECT = "dict"
_MISSING = object()


def update_pairs(other: Any, kw: dict) -> list:
    """The (key, value) pairs of ``dict.update(other, **kw)``, in order."""
    if isinstance(other, SharedDict):
        other = other._items()
    elif hasattr(other, "items"):
        other = other.items()
    elif hasattr(other, "keys"):
        other = [(k, other[k]) for k in other.keys()]
    return list(other) + list(kw.items())


class _ItemsView(ItemsView):
    __slots__ = ()
    _mapping: "SharedDict"

    def __iter__(self):
        return iter(self._mapping._items())


class _ValuesView(ValuesView):
    __slots__ = ()
    _mapping: "SharedDict"

    def __iter__(self):
        return iter(self._mapping._values())


class SharedDict(Handle, _shmkit.Dict, MutableMapping):
    """SharedDict(name, data=None, *, create=None, size=0, max_size=0, allow_pickle=True, capacity=0, mode=0o600, trust="owner")

    A ``dict`` in shared memory that any number of processes use at once.

    * ``create=None`` attaches to ``name`` or creates it; ``True`` requires
      a new one (``FileExistsError``); ``False`` an existing one
      (``FileNotFoundError``).
    * ``size`` is the memory backed at creation; the segment grows on demand
      up to ``max_size`` (64 GiB of address space by default), so the dict
      has no fixed capacity.  ``capacity`` pre-sizes the hash table.
    * Reads never block and never see a half-written value; writes from
      many processes run at once without locks (a writer killed at any
      instant leaves the dict consistent).
    * ``allow_pickle=False``: this handle never unpickles; an operation that
      would store or read a pickled value raises ``TypeError`` and changes
      nothing.
    * ``incr``, ``compare_and_swap``, ``setdefault`` and ``pop`` are atomic
      across processes.  ``get_view(key)`` returns a zero-copy read-only
      numpy view that stays valid even if the key is overwritten.
    * Iteration (``keys()``, ``values()``, ``items()``) walks a snapshot.
    * ``trust`` says whose existing segment to accept (``"owner"``: only
      this user's, writable by nobody else; see ``Segment``).
    * ``wait(key=None, timeout=None)`` (and ``await wait_async(...)``)
      sleeps until another writer changes the dict (or that key), on a
      futex; ``watch()`` gives a ``Watch`` that misses no change between
      waits.  See docs/dict.md.
    * Pickles as its name: unpickling (e.g. in a Pool worker) attaches.
    * ``url="redis://..."`` (or the ``SHMKIT_URL`` environment variable)
      keeps it in a Redis/Valkey hash instead, same API: docs/redis.md.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, url: Optional[str] = None, **kwargs: Any):
        # url= or SHMKIT_URL: the same structure on a Redis/Valkey server
        other = open_remote("dict", url, args, kwargs)
        return other if other is not None else _shmkit.Dict.__new__(cls)

    def __init__(self, name: str, data: Any = None, *, create: Optional[bool] = None,
                 size: int = 0, max_size: int = 0, allow_pickle: bool = True,
                 capacity: int = 0, mode: int = 0o600, url: Optional[str] = None,
                 trust: Trust = "owner") -> None:
        if not isinstance(name, str):
            raise TypeError("SharedDict name must be a str")
        with Segment(name, size=size, create=create, mode=mode, max_size=max_size,
                     trust=trust) as seg:
            _shmkit.Dict.__init__(self, seg, STANDALONE_OBJECT, create=create is not False,
                                  capacity=capacity, allow_pickle=allow_pickle)
        if data is not None:
            self.update(data)

    @classmethod
    def _open_in(cls, segment: Segment, name: str, *, create: bool = True,
                 capacity: int = 0, allow_pickle: bool = True, data: Any = None):
        """Open (or create) the dict ``name`` in ``segment``."""
        self = _shmkit.Dict.__new__(cls)
        _shmkit.Dict.__init__(self, segment, name, create=create, capacity=capacity,
                              allow_pickle=allow_pickle)
        if data is not None:
            self.update(data)
        return self

    @classmethod
    def _attach_in(cls, segment: Segment, name: str) -> "SharedDict":
        return cls._open_in(segment, name, create=False)

    # ---- waiting for changes ----

    def watch(self) -> "Watch":
        """Start watching for changes: every successful set, delete or clear
        (by any process) from now on moves ``Watch.version``."""
        return Watch(self)

    def wait(self, key: Any = _ANY, *, timeout: Optional[float] = None) -> bool:
        """Sleep until the dict changes (with ``key``: until that key is
        written or deleted) after this call; False after ``timeout``
        seconds (None: no limit)."""
        with Watch(self) as w:
            if key is _ANY:
                return w.wait(timeout)
            before = self._entry_version(key)
            end = None if timeout is None else time.monotonic() + timeout
            while True:
                left = None if end is None else end - time.monotonic()
                if (left is not None and left <= 0) or not w.wait(left):
                    return False
                if self._entry_version(key) != before:
                    return True

    async def wait_async(self, key: Any = _ANY, *, timeout: Optional[float] = None) -> bool:
        """``wait()`` without blocking the event loop."""
        with Watch(self) as w:
            deadline = _async.Deadline(timeout)
            before = None if key is _ANY else self._entry_version(key)
            while True:
                left = deadline.left()
                if (left is not None and left <= 0) or not await w.wait_async(left):
                    return False
                if key is _ANY or self._entry_version(key) != before:
                    return True

    def _wait_step(self, seen: int, nap: float) -> bool:
        return self._wait_change(seen, nap)

    # ---- Mapping API (the hot slots are inherited from the C type) ----

    def __iter__(self) -> Iterator:
        return iter(self._keys())

    def keys(self):
        return KeysView(self)

    def items(self):
        return _ItemsView(self)

    def values(self):
        return _ValuesView(self)

    def copy(self) -> dict:
        """A plain ``dict`` snapshot of the contents."""
        return dict(self._items())

    def snapshot(self) -> dict:
        """A plain ``dict`` of the whole contents at one instant.  Unlike
        ``copy()`` and iteration, which walk the shards one after another
        while writers go on, this holds every writer off (readers go on)
        while it copies the entries, so it never mixes states: a value moved
        from one key to another by a writer appears under exactly one.
        Writers wait for as long as the copy takes (about a microsecond per
        entry)."""
        return self._snapshot(True)

    def update(self, other=(), /, **kw) -> None:
        """Like ``dict.update`` (each key is stored atomically, not the batch)."""
        if self.closed:
            raise ValueError("operation on a closed SharedDict")
        for k, v in update_pairs(other, kw):
            self[k] = v

    def get_many(self, keys, default=None) -> list:
        """The values of ``keys`` (``default`` for absent ones), in order."""
        return [self.get(k, default) for k in keys]

    def __eq__(self, other):
        if isinstance(other, SharedDict):
            return self is other or dict(self._items()) == dict(other._items())
        if isinstance(other, dict):
            return dict(self._items()) == other
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.SharedDict {self.segment_name!r}/{self.object_name!r} closed>"
        items = self._items()
        if len(items) > 50:
            body = ", ".join(f"{k!r}: {v!r}" for k, v in items[:50])
            return f"SharedDict({{{body}, ...}}, {len(items)} entries)"
        return f"SharedDict({dict(items)!r})"

    # ---- handle lifecycle ----

    def _reopen_kwargs(self):
        return {"create": False, "allow_pickle": self.allow_pickle}

    # ---- sizing ----

    @staticmethod
    def estimate_size(entries: int, key_size: int = 16, value_size: int = 16) -> int:
        """Bytes of shared memory ``entries`` entries with keys of
        ``key_size`` and values of ``value_size`` encoded bytes need (heap
        rounding and table included; an upper-bound-ish estimate).  Use it
        for ``size=`` to back the memory up front, or ``max_size=`` to cap
        it.  str/bytes encode to their UTF-8/raw length, ints and floats to
        8 bytes."""
        if entries < 0 or key_size < 0 or value_size < 0:
            raise ValueError("sizes must be >= 0")
        return _shmkit.dict_estimate_size(entries, key_size, value_size)

    def recommend_size(self, entries: int) -> dict:
        """Sizing advice for holding ``entries`` entries like the ones held
        now: ``key_size`` and ``value_size`` (the average encoded sizes of the
        current entries, measured by walking the dict as ``check()`` does,
        writers held off meanwhile; 16 when empty) and ``size``, what
        ``estimate_size(entries, key_size, value_size)`` gives for them; also
        ``entries``, ``current_entries`` and ``segment_size`` (bytes backed now)."""
        if isinstance(entries, bool) or not isinstance(entries, int):
            raise TypeError(f"entries must be an int, not {type(entries).__name__}")
        if entries < 0:
            raise ValueError("entries must be >= 0")
        st = self.check()
        n = st["entries"]
        key_size = -(-st["key_bytes"] // n) if n else 16
        value_size = -(-st["value_bytes"] // n) if n else 16
        return {"entries": entries, "current_entries": n, "key_size": key_size,
                "value_size": value_size,
                "size": self.estimate_size(entries, key_size, value_size),
                "segment_size": st["segment_size"]}


class Watch:
    """A watch on a SharedDict (``d.watch()``, best in a ``with``): while it
    is open, writers count every successful set, delete or clear in the
    dict's change counter; ``version`` is the count this watch has seen.
    ``wait()`` returns as soon as the counter differs from ``version`` (a
    change since the watch opened or since the last ``wait``), so a change
    made while you were reading the dict is never missed.  Writers pay for
    the counter only while some watch is open."""

    __slots__ = ("_dict", "version", "_open")

    def __init__(self, d: SharedDict) -> None:
        d._watch(True)          # register first, then read (docs/dict.md)
        self._dict = d
        self._open = True
        self.version: int = d._changes()

    def changed(self) -> bool:
        """Whether the dict changed since ``version`` (never blocks);
        advances ``version`` if so."""
        now = self._dict._changes()
        if now == self.version:
            return False
        self.version = now
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep until the dict changed since ``version`` (True, and
        ``version`` advances) or ``timeout`` seconds pass (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.changed():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._dict._wait_change(self.version, -1.0 if left is None else left)
        return True

    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """``wait()`` without blocking the event loop (one waiter thread per
        dict handle, whatever the number of waiting coroutines)."""
        deadline = _async.Deadline(timeout)
        while not self.changed():
            left = deadline.left()
            if left is not None and left <= 0:
                return False
            await _async.wait(self._dict, "change", self._dict._wait_step, left,
                              self.version)
        return True

    def close(self) -> None:
        """Stop watching (also on leaving a ``with``)."""
        if self._open:
            self._open = False
            if not self._dict.closed:
                self._dict._watch(False)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


register_kind("dict", SharedDict)

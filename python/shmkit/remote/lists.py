"""Queue and Stack on a Redis/Valkey server: one list each, items in the
shared-memory item format ('b' + bytes or 'p' + pickle, shmkit._codec).

Queue: ``put`` = ``RPUSH`` (bounded: a Lua length check), ``get`` =
``BLPOP`` (``LPOP`` for ``block=False`` or ``timeout=0``: the server reads
a 0 timeout as forever), ``get_many`` = ``LPOP``/``BLMPOP ... COUNT``.  A
blocking ``put`` on a full queue polls with backoff.  A wait is cut into
``BLPOP`` calls of at most a second, so a lost server is noticed within
the socket timeout and Ctrl-C is served.

Stack: ``RPUSH`` / ``RPOP`` / ``LINDEX -1``.
"""
from __future__ import annotations

import queue as _stdqueue
import time
from typing import Any, Iterable, List, Optional

from .._codec import decode_item, encode_item, item_is_pickle
from . import register_remote
from ._base import RemoteHandle, translating

__all__ = ["RedisQueue", "RedisStack"]

_WAIT_SLICE = 1.0      # seconds of one BLPOP: well under the socket timeout
_ALL = 1 << 30          # get_many(max_items=None)
_BATCH = 1000

# KEYS[1] list; ARGV[1] maxsize, ARGV[2..] items.  Pushes the items that
# fit, in order; returns how many.
_PUT_BOUNDED = """
local room = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[1])
local n = math.min(room, #ARGV - 1)
if n <= 0 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2, n + 1))
return n
"""


def _deadline(block: Any, timeout: Any) -> Optional[float]:
    """None: wait forever; 0.0: do not wait; else a time.monotonic()."""
    if not block:
        return 0.0
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return 0.0 if timeout == 0 else time.monotonic() + timeout


def _slice(deadline: Optional[float]) -> Optional[float]:
    """Seconds of the next blocking call, or None once the deadline passed."""
    if deadline is None:
        return _WAIT_SLICE
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    return min(left, _WAIT_SLICE)


class _ListHandle(RemoteHandle):
    """Shared by Queue and Stack: items and the allow_pickle refusal."""

    _where = ""

    def _state(self):
        return {"allow_pickle": self.allow_pickle}

    def _restore(self, state):
        self.allow_pickle = state["allow_pickle"]

    def _enc(self, item: Any) -> bytes:
        return encode_item(item, self.allow_pickle, self.noun)

    def _refuse(self, raw: bytes, put_back) -> None:
        """With allow_pickle=False, put a pickled item back where it was
        and raise TypeError (no operation ever unpickles)."""
        if not self.allow_pickle and item_is_pickle(raw):
            put_back(self._key, raw)
            raise TypeError(f"the next {self.noun.lower()} item is a pickle and this handle "
                            f"has allow_pickle=False (the item was left {self._where})")

    def _dec(self, raw: bytes, put_back) -> Any:
        self._refuse(raw, put_back)
        return decode_item(raw, self.noun.lower())

    def check(self, repair: bool = False) -> dict:
        """Verify every item's tag; returns {'items': n} (``repair``, a
        Stack's option, has nothing to repair on a server)."""
        raws = self._r.lrange(self._key, 0, -1)
        for raw in raws:
            if raw[:1] not in (b"b", b"p"):
                decode_item(raw, self.noun.lower())
        return {"items": len(raws)}


@translating
class RedisQueue(_ListHandle):
    """A shmkit.Queue kept in a Redis/Valkey list (see docs/redis.md).
    ``ring_bytes``, ``size``, ``max_size``, ``mode`` and ``trust`` mean
    nothing on a server and are ignored."""

    kind = "queue"
    noun = "Queue"
    _where = "in the queue"

    def __init__(self, name: str, maxsize: int = 0, *, create: Optional[bool] = None,
                 ring_bytes: int = 0, allow_pickle: bool = True, size: int = 0,
                 max_size: int = 0, mode: int = 0o600, url: str,
                 trust: str = "owner") -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError("maxsize must be an int")
        self._setup(name, url)
        self.allow_pickle = bool(allow_pickle)
        meta = self._open(create, {"maxsize": max(maxsize, 0)})
        self.maxsize = int(meta.get("maxsize", 0))

    def _state(self):
        return {"allow_pickle": self.allow_pickle, "maxsize": self.maxsize}

    def _restore(self, state):
        self.allow_pickle = state["allow_pickle"]
        self.maxsize = state["maxsize"]

    ring_bytes = 0

    # ---- put ----

    def _push(self, raws: List[bytes]) -> int:
        """Append what fits now; how many."""
        if not self.maxsize:
            p = self._r.pipeline(transaction=False)
            for i in range(0, len(raws), _BATCH):
                p.rpush(self._key, *raws[i:i + _BATCH])
            p.execute()
            return len(raws)
        done = 0
        script = self._script(_PUT_BOUNDED)
        while done < len(raws):
            chunk = raws[done:done + _BATCH]
            k = script(keys=[self._key], args=[self.maxsize, *chunk])
            done += k
            if k < len(chunk):
                break
        return done

    def _put_all(self, raws: List[bytes], block: Any, timeout: Any) -> int:
        deadline = _deadline(block, timeout)
        done, pause = 0, 0.0005
        while True:
            done += self._push(raws[done:])
            if done == len(raws):
                return done
            if deadline == 0.0 or (deadline is not None and time.monotonic() >= deadline):
                e = _stdqueue.Full()
                e.count = done  # type: ignore[attr-defined]  # put_many's own field
                raise e
            time.sleep(pause if deadline is None else
                       max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, 0.05)

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Append item; when the queue is full, wait (polling) up to
        timeout seconds or raise queue.Full."""
        raw = self._enc(item)
        if not self.maxsize:
            _deadline(block, timeout)
            self._r.rpush(self._key, raw)
            return
        self._put_all([raw], block, timeout)

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    push = put_nowait

    def put_many(self, items: Iterable[Any], block: bool = True,
                 timeout: Optional[float] = None) -> int:
        """Put every item in order, pipelined; queue.Full (with .count =
        items put) if they cannot all go in time."""
        raws = [self._enc(x) for x in items]
        if not raws:
            _deadline(block, timeout)
            self._r
            return 0
        return self._put_all(raws, block, timeout)

    # ---- get ----

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item; wait up to timeout seconds
        or raise queue.Empty."""
        deadline = _deadline(block, timeout)
        r = self._r
        if deadline == 0.0:
            raw = r.lpop(self._key)
        else:
            raw = None
            while raw is None:
                wait = _slice(deadline)
                if wait is None:
                    break
                got = r.blpop([self._key], timeout=wait)
                raw = got[1] if got else None
        if raw is None:
            raise _stdqueue.Empty
        return self._dec(raw, r.lpush)

    def get_nowait(self) -> Any:
        return self.get(False)

    def pop(self, *default):
        if len(default) > 1:
            raise TypeError("pop() takes at most 1 argument (default)")
        try:
            return self.get(False)
        except _stdqueue.Empty:
            if default:
                return default[0]
            raise

    def get_many(self, max_items: Optional[int] = None, block: bool = True,
                 timeout: Optional[float] = None) -> List[Any]:
        """Wait (as get does) for at least one item, then return up to
        max_items of those present, oldest first (LPOP/BLMPOP COUNT)."""
        if max_items is None:
            n = _ALL
        elif isinstance(max_items, bool) or not isinstance(max_items, int):
            raise TypeError("max_items must be an int")
        elif max_items < 1:
            raise ValueError("max_items must be >= 1")
        else:
            n = min(max_items, _ALL)
        deadline = _deadline(block, timeout)
        r = self._r
        raws = r.lpop(self._key, n)
        while not raws and deadline != 0.0:
            wait = _slice(deadline)
            if wait is None:
                break
            got = r.blmpop(wait, 1, self._key, direction="LEFT", count=n)
            raws = got[1] if got else None
        if not raws:
            raise _stdqueue.Empty
        if not self.allow_pickle:
            for i, raw in enumerate(raws):
                if item_is_pickle(raw):
                    # return what came before it; the rest goes back
                    if raws[i:]:
                        r.lpush(self._key, *reversed(raws[i:]))
                    if i == 0:
                        self._refuse(raw, lambda *a: None)
                    raws = raws[:i]
                    break
        return [decode_item(raw, "queue") for raw in raws]

    # ---- state ----

    def qsize(self) -> int:
        return self._r.llen(self._key)

    def __len__(self) -> int:
        return self.qsize()

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return bool(self.maxsize) and self.qsize() >= self.maxsize

    def join_thread(self) -> None:
        """No-op (multiprocessing.Queue compatibility: no feeder thread)."""

    def cancel_join_thread(self) -> None:
        """No-op (multiprocessing.Queue compatibility: no feeder thread)."""

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Queue {self.segment_name!r} at {self.url!r} closed>"
        return (f"<shmkit.Queue {self.segment_name!r} at {self.url!r} "
                f"qsize={self.qsize()} maxsize={self.maxsize}>")


@translating
class RedisStack(_ListHandle):
    """A shmkit.Stack kept in a Redis/Valkey list (see docs/redis.md)."""

    kind = "stack"
    noun = "Stack"
    _where = "on the stack"

    def __init__(self, name: str, *, create: Optional[bool] = None,
                 allow_pickle: bool = True, size: int = 0, max_size: int = 0,
                 mode: int = 0o600, url: str, trust: str = "owner") -> None:
        self._setup(name, url)
        self.allow_pickle = bool(allow_pickle)
        self._open(create, {})

    def push(self, item: Any) -> None:
        """Put item on top."""
        self._r.rpush(self._key, self._enc(item))

    def _top(self, name: str, default: tuple, take: bool) -> Any:
        if len(default) > 1:
            raise TypeError(f"{name}() takes at most 1 argument (default)")
        r = self._r
        raw = r.rpop(self._key) if take else r.lindex(self._key, -1)
        if raw is None:
            if default:
                return default[0]
            raise IndexError(f"{name} from an empty stack")
        return self._dec(raw, r.rpush if take else (lambda *a: None))

    def pop(self, *default) -> Any:
        """Remove and return the top item; IndexError when empty unless
        default is given."""
        return self._top("pop", default, True)

    def peek(self, *default) -> Any:
        """The top item, left in place; IndexError when empty unless
        default is given."""
        return self._top("peek", default, False)

    def __len__(self) -> int:
        return self._r.llen(self._key)

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmkit.Stack {self.segment_name!r} at {self.url!r} closed>"
        return f"<shmkit.Stack {self.segment_name!r} at {self.url!r} len={len(self)}>"


register_remote("queue", RedisQueue)
register_remote("stack", RedisStack)

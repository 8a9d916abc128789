"""The Redis / Valkey home of shmkit's structures.

``SharedDict``, ``Queue``, ``Stack``, ``Bitset`` and ``Array`` take
``url="redis://host:port/db"`` (also ``rediss://``, ``unix:///path.sock``,
and ``valkey://`` / ``valkeys://`` as aliases of ``redis://`` / ``rediss://``),
or read the ``SHMKIT_URL`` environment variable when ``url`` is not given;
``url=""`` always means shared memory.  The server-backed classes here have
the same methods, values and codecs (shmkit._codec) as the shared-memory
ones.  They need the ``redis`` package (``pip install shmkit[redis]``);
shmkit imports without it.  See docs/redis.md.
"""
from __future__ import annotations

from typing import Any, Optional

from .._url import refuse_url, resolve_url
from ._base import ServerConnectionError

__all__ = ["ServerConnectionError", "resolve_url", "open_remote", "refuse_url"]


def open_remote(kind: str, url: Optional[str], args: tuple, kwargs: dict) -> Any:
    """The server-backed structure for a constructor call, or None when
    the call is for shared memory (no url and no SHMKIT_URL)."""
    target = resolve_url(url)
    if target is None:
        return None
    cls: Any
    if kind == "dict":
        from .dict import RedisDict as cls
    elif kind == "queue":
        from .lists import RedisQueue as cls
    elif kind == "stack":
        from .lists import RedisStack as cls
    elif kind == "bitset":
        from .bitset import RedisBitset as cls
    else:
        from .array import RedisArray as cls
    return cls(*args, url=target, **kwargs)

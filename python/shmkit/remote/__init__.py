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

import os
from typing import Any, Optional

from ._base import ServerConnectionError

__all__ = ["ServerConnectionError", "resolve_url", "open_remote", "refuse_url"]

_SCHEMES = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")


def resolve_url(url: Optional[str]) -> Optional[str]:
    """The server URL a structure should use, or None for shared memory."""
    if url is None:
        url = os.environ.get("SHMKIT_URL") or None
        if url is None:
            return None
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    if url == "":
        return None
    if not url.startswith(_SCHEMES):
        raise ValueError(f"url {url!r}: use redis://, rediss://, unix:// or valkey:// "
                         "(or url='' for shared memory)")
    return url


def open_remote(kind: str, url: Optional[str], args: tuple, kwargs: dict) -> Any:
    """The server-backed structure for a constructor call, or None when
    the call is for shared memory (no url and no SHMKIT_URL)."""
    target = resolve_url(url)
    if target is None:
        return None
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


def refuse_url(what: str, url: Optional[str]) -> None:
    """ValueError for ``url=`` on a shared-memory-only class."""
    if url:
        raise ValueError(f"{what} is shared-memory only and takes no url=: on a Redis or "
                         "Valkey server use SharedDict, Queue, Stack, Bitset or Array "
                         "(each takes url=)")

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

from typing import Any, Dict, Optional

from .._url import refuse_url, resolve_url
from ._base import ServerConnectionError

__all__ = ["ServerConnectionError", "resolve_url", "open_remote", "refuse_url",
           "register_remote"]

# kind ("dict", "queue", ...) -> its server-backed class.  The modules of
# this package that define them import the shared-memory structures and
# register here; the package shmkit imports them all, so this module never
# imports them.
_REMOTE: Dict[str, Any] = {}


def register_remote(kind: str, cls: Any) -> None:
    """Let ``open_remote(kind, ...)`` make ``cls``."""
    _REMOTE[kind] = cls


def open_remote(kind: str, url: Optional[str], args: tuple, kwargs: dict) -> Any:
    """The server-backed structure for a constructor call, or None when
    the call is for shared memory (no url and no SHMKIT_URL)."""
    target = resolve_url(url)
    if target is None:
        return None
    return _REMOTE[kind](*args, url=target, **kwargs)

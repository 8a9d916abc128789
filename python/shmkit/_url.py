"""Which home a structure lives in: ``url=`` (or ``SHMKIT_URL``) names a
Redis/Valkey server, nothing names shared memory.  Below ``segment`` and
``remote``, which both use it."""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["resolve_url", "refuse_url"]

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


def refuse_url(what: str, url: Optional[str]) -> None:
    """ValueError for ``url=`` on a shared-memory-only class."""
    if url:
        raise ValueError(f"{what} is shared-memory only and takes no url=: on a Redis or "
                         "Valkey server use SharedDict, Queue, Stack, Bitset or Array "
                         "(each takes url=)")

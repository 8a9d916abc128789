"""Segments: named shared memory holding many named objects."""
from __future__ import annotations

from typing import Any, Callable, Dict, Literal, Optional

from . import _shmkit
from .remote import refuse_url

__all__ = ["Segment", "Trust", "register_kind"]

#: Whose existing segment an open accepts (see ``Segment``).
Trust = Literal["owner", "group", "any"]

# type name (as in Segment.objects()) -> opener(segment, name) for Segment.open()
_OPENERS: Dict[str, Callable[["Segment", str], Any]] = {}


def register_kind(type_name: str, opener: Callable[["Segment", str], Any]) -> None:
    """Let ``Segment.open(name)`` open objects of ``type_name``."""
    _OPENERS[type_name] = opener


def _attach(name: str, trust: Trust = "owner") -> "Segment":
    return Segment(name, create=False, trust=trust)


class Segment(_shmkit.Segment):
    """Segment(name, size=0, *, create=None, mode=0o600, max_size=0, unlink_on_exit=False, trust="owner")

    A named POSIX shared-memory segment that holds many named objects
    (allocators, dicts, queues, stacks, bitsets, arrays).

    * ``create=None`` opens the segment, creating it if it does not exist;
      ``True`` requires a new one (``FileExistsError``); ``False`` requires an
      existing one (``FileNotFoundError``).  Attaching needs only the name.
    * ``size`` is the memory backed at once; the segment grows on demand up
      to ``max_size`` (64 GiB by default: address space, not memory).
    * ``close()`` unmaps this handle and leaves the segment for others;
      ``unlink()`` removes it.  As a context manager it closes on exit, and
      also unlinks when ``unlink_on_exit=True`` and this handle created it.
    * ``mode`` is the new segment's permission bits, applied exactly (the
      umask does not change them); the file belongs to this process's
      effective user and group.
    * ``trust`` says whose *existing* segment an attach (or an open that
      finds the name taken) accepts, checked on the opened file before
      anything in it is read.  ``"owner"`` (the default): only a file owned
      by this process's effective uid that nobody else may write (mode has
      no group/other write bit) -- root included, so a file another user
      planted under a predictable name is refused.  ``"group"``: also a
      file owned by anyone, or group-writable, whose group is one of this
      process's groups and that is not world-writable (create it with
      ``mode=0o660`` and attach with ``trust="group"`` everywhere, the
      creator included).  ``"any"``: no check.  A refused segment raises
      ``ForeignSegmentError`` (a ``PermissionError``) naming its owner and
      mode.  Whoever can write a segment controls what its readers see,
      and runs code in any reader that unpickles.
    * A Segment pickles as its name and trust: unpickling attaches.
    """

    def __init__(self, *args, url: Optional[str] = None, **kwargs) -> None:
        refuse_url("Segment", url)
        super().__init__(*args, **kwargs)

    def __reduce__(self):
        return (_attach, (self.name, self.trust))

    # ---- objects in the segment -------------------------------------------------

    def allocator(self, name: str, kind: str = "freelist", size: int | None = None,
                  *, slab_size: int | None = None):
        """Open allocator ``name`` in this segment, creating it with ``size``
        bytes if absent.  ``kind`` is "freelist", "bump" or "slab"."""
        from .alloc import _KINDS

        try:
            cls = _KINDS[kind]
        except KeyError:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}") from None
        return cls._open_in(self, name, capacity=size, slab_size=slab_size)

    def dict(self, name: str, **kw):
        """Open (or create) the SharedDict ``name`` in this segment."""
        from .dict import SharedDict

        return SharedDict._open_in(self, name, **kw)

    def queue(self, name: str, *, joinable: bool = False, **kw):
        """Open (or create) the Queue ``name`` in this segment
        (``joinable=True``: a JoinableQueue)."""
        from .queue import JoinableQueue, Queue

        return (JoinableQueue if joinable else Queue)._open_in(self, name, **kw)

    def stack(self, name: str, **kw):
        """Open (or create) the Stack ``name`` in this segment."""
        from .stack import Stack

        return Stack._open_in(self, name, **kw)

    def bitset(self, name: str, *args, **kw):
        """Open (or create) the Bitset ``name`` in this segment."""
        from .bitset import Bitset

        return Bitset._open_in(self, name, *args, **kw)

    def array(self, name: str, *args, **kw):
        """Open (or create) the Array ``name`` in this segment."""
        from .array import Array

        return Array._open_in(self, name, *args, **kw)

    def counter(self, name: str, **kw):
        """Open (or create) the Counter ``name`` in this segment."""
        from .counter import Counter

        return Counter._open_in(self, name, **kw)

    def open(self, name: str):
        """Open the existing object ``name`` whatever its type."""
        info = self.lookup(name)
        kind = info["type"]
        if kind not in _OPENERS:
            # importing the package module registers its opener
            import importlib

            module = {"freelist": "alloc", "bump": "alloc", "slab": "alloc"}.get(kind, kind)
            try:
                importlib.import_module(f"{__package__}.{module}")
            except ImportError:
                pass
        try:
            opener = _OPENERS[kind]
        except KeyError:
            raise TypeError(f"object {name!r} has type {kind!r}, which this "
                            f"version of shmkit cannot open") from None
        return opener(self, name)

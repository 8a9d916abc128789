"""Segments: named shared memory holding many named objects."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Literal, Optional, Tuple, Union

from . import _shmkit
from ._url import refuse_url

if TYPE_CHECKING:   # annotations only: these modules import this one
    from .alloc import BumpAllocator, FreeListAllocator, SlabAllocator
    from .array import Array
    from .bitset import Bitset
    from .counter import Counter
    from .dict import SharedDict
    from .queue import Queue
    from .stack import Stack

    Allocator = Union[FreeListAllocator, BumpAllocator, SlabAllocator]

__all__ = ["Segment", "Trust", "register_kind", "ALLOCATOR_KINDS", "JOINABLE_QUEUE"]

#: Whose existing segment an open accepts (see ``Segment``).
Trust = Literal["owner", "group", "any"]

#: The type names of the allocators (``Segment.allocator(kind=...)``).
ALLOCATOR_KINDS: Tuple[str, ...] = ("freelist", "bump", "slab")
#: The registry key of the class ``Segment.queue(joinable=True)`` opens (a
#: joinable queue's type name in ``Segment.objects()`` is "queue").
JOINABLE_QUEUE = "queue/joinable"

# The one way from a type name to its class.  Each structure module imports
# this one and registers its class (the package imports them all), so this
# module never imports them.  type name (as in Segment.objects()) -> class
# with ``_open_in(segment, name, ...)`` and ``_attach_in(segment, name)``.
_KINDS: Dict[str, Any] = {}


def register_kind(type_name: str, cls: Any) -> None:
    """Let ``Segment`` open objects of ``type_name`` as ``cls``."""
    _KINDS[type_name] = cls


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

    def allocator(self, name: str, kind: str = "freelist", capacity: Optional[int] = None,
                  *, slab_size: Optional[int] = None) -> "Allocator":
        """Open allocator ``name`` in this segment, creating it with
        ``capacity`` bytes if absent.  ``kind`` is "freelist", "bump" or "slab"."""
        if kind not in ALLOCATOR_KINDS:
            raise ValueError(f"kind must be one of {sorted(ALLOCATOR_KINDS)}, not {kind!r}")
        return _KINDS[kind]._open_in(self, name, capacity=capacity, slab_size=slab_size)

    def dict(self, name: str, **kw: Any) -> "SharedDict":
        """Open (or create) the SharedDict ``name`` in this segment."""
        return _KINDS["dict"]._open_in(self, name, **kw)

    def queue(self, name: str, *, joinable: bool = False, **kw: Any) -> "Queue":
        """Open (or create) the Queue ``name`` in this segment
        (``joinable=True``: a JoinableQueue)."""
        return _KINDS[JOINABLE_QUEUE if joinable else "queue"]._open_in(self, name, **kw)

    def stack(self, name: str, **kw: Any) -> "Stack":
        """Open (or create) the Stack ``name`` in this segment."""
        return _KINDS["stack"]._open_in(self, name, **kw)

    def bitset(self, name: str, *args: Any, **kw: Any) -> "Bitset":
        """Open (or create) the Bitset ``name`` in this segment."""
        return _KINDS["bitset"]._open_in(self, name, *args, **kw)

    def array(self, name: str, *args: Any, **kw: Any) -> "Array":
        """Open (or create) the Array ``name`` in this segment."""
        return _KINDS["array"]._open_in(self, name, *args, **kw)

    def counter(self, name: str, **kw: Any) -> "Counter":
        """Open (or create) the Counter ``name`` in this segment."""
        return _KINDS["counter"]._open_in(self, name, **kw)

    def open(self, name: str) -> Any:
        """Open the existing object ``name`` whatever its type."""
        kind = self.lookup(name)["type"]
        try:
            cls = _KINDS[kind]
        except KeyError:
            raise TypeError(f"object {name!r} has type {kind!r}, which this "
                            f"version of shmkit cannot open") from None
        return cls._attach_in(self, name)

"""shmkit: lock-free shared-memory data structures for processes on one machine.

Everything lives in named POSIX shared memory (``/dev/shm/NAME``) and works
from any number of processes at once::

    import shmkit
    with shmkit.Segment("demo", create=True) as seg:
        heap = seg.allocator("heap", capacity=1 << 20)
        off = heap.allocate(64)
        heap.write(off, b"hello")

``SharedDict``, ``Queue``, ``Stack``, ``Bitset`` and ``Array`` also live on
a Redis or Valkey server, same API: pass ``url="redis://host:6379"`` (or set
``SHMKIT_URL``); see docs/redis.md.

Attaching never registers a segment for removal at exit: only ``unlink()``
(or ``shmkit.unlink(name)``, or ``shmkit rm NAME``) removes one.
"""
from ._shmkit import (
    C_VERSION,
    DEFAULT_MAX_SIZE,
    MAX_MAX_SIZE,
    CorruptSegmentError,
    Error,
    ForeignSegmentError,
    OutOfMemoryError,
    SegmentFullError,
    name_valid,
    unlink,
)
from .alloc import BumpAllocator, FreeListAllocator, SlabAllocator
from .array import Array
from .bitset import Bitset
from .counter import Counter
from .dict import SharedDict
from .queue import Empty, Full, JoinableQueue, Queue
from .remote import ServerConnectionError
from .remote import array as _remote_array  # noqa: F401 - each registers its class
from .remote import bitset as _remote_bitset  # noqa: F401
from .remote import dict as _remote_dict  # noqa: F401
from .remote import lists as _remote_lists  # noqa: F401
from .segment import Segment
from .stack import Stack

__version__ = C_VERSION

__all__ = [
    "Segment",
    "SharedDict",
    "Queue",
    "JoinableQueue",
    "Stack",
    "Full",
    "Empty",
    "FreeListAllocator",
    "BumpAllocator",
    "SlabAllocator",
    "Bitset",
    "Array",
    "Counter",
    "Error",
    "CorruptSegmentError",
    "ForeignSegmentError",
    "OutOfMemoryError",
    "SegmentFullError",
    "ServerConnectionError",
    "unlink",
    "name_valid",
    "DEFAULT_MAX_SIZE",
    "MAX_MAX_SIZE",
]

"""What every structure handle shares: the ``with`` statement, ``unlink()``,
and pickling by name (a handle passed to a Pool worker re-attaches there,
with the ``trust`` its segment was opened with).

A structure class lists ``Handle`` before its C base type and provides
``segment_name``, ``object_name``, ``closed``, ``close()`` and a classmethod
``_open_in(segment, name, **kwargs)``; it may override ``_reopen_kwargs()``
to carry options (e.g. ``allow_pickle``) through pickling, and
``_attach_in()`` when opening an existing object needs other arguments.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Tuple

from . import _shmkit
from .segment import Segment, Trust


def _reattach(cls: Any, segment_name: str, object_name: str, kwargs: Dict[str, Any],
              trust: Trust = "owner") -> Any:
    with Segment(segment_name, create=False, trust=trust) as seg:
        return cls._open_in(seg, object_name, **kwargs)


class Handle:
    __slots__ = ()

    if TYPE_CHECKING:   # what the C base type (or RemoteHandle) provides
        closed: bool
        created: bool
        trust: Trust
        segment_name: str
        object_name: str

        def close(self) -> None: ...

        @classmethod
        def _open_in(cls, segment: Segment, name: str, *args: Any, **kwargs: Any) -> Any: ...

    @classmethod
    def _attach_in(cls, segment: Segment, name: str) -> Any:
        """Open the existing object ``name`` of ``segment`` (``Segment.open``)."""
        return cls._open_in(segment, name)

    def _reopen_kwargs(self) -> Dict[str, Any]:
        return {}

    def unlink(self) -> None:
        """Remove the segment holding this object from the system.  Handles
        that are open (here and in other processes) keep working until
        closed; attaching by name then fails with FileNotFoundError."""
        _shmkit.unlink(self.segment_name)

    def __enter__(self) -> Any:
        if self.closed:
            raise ValueError(f"operation on a closed {type(self).__name__}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Tuple[Any, ...]:
        if self.closed:
            raise ValueError(f"cannot pickle a closed {type(self).__name__}")
        return (_reattach, (type(self), self.segment_name, self.object_name,
                            self._reopen_kwargs(), self.trust))

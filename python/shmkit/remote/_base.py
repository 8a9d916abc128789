"""What every server-backed structure shares: the connection (one client
per URL and process, made on first use, so a handle unpickled in a worker
connects there), the keys of an object, create/attach, close/unlink,
pickling as (url, name), and the translation of a lost server into
``ServerConnectionError``.

Keys: every key of the object ``NAME`` of kind ``KIND`` (dict, queue,
stack, bitset, array) is ``{shmkit:NAME}:KIND`` (the data) and
``{shmkit:NAME}:KIND:meta`` (a hash: ``kind`` and the creation
parameters).  The ``{...}`` hash tag puts all of them in one cluster slot,
so scripts and MULTI work on a Redis Cluster too.
"""
from __future__ import annotations

import functools
import os
import re
import threading
from typing import Any, Dict, Optional, Tuple

from .. import _shmkit
from .._handle import Handle

__all__ = ["ServerConnectionError", "RemoteHandle", "client_for", "translate_errors",
           "seq_index"]

KINDS = ("dict", "queue", "stack", "bitset", "array")


class ServerConnectionError(_shmkit.Error, ConnectionError):
    """The Redis/Valkey server of a structure could not be reached (down,
    restarted, or slower than the socket timeout).  The operation may or may
    not have taken effect; the handle reconnects by itself on its next call."""


_clients: Dict[Tuple[int, str], Any] = {}
_clients_lock = threading.Lock()
_DEFAULTS = {"socket_timeout": 10.0, "socket_connect_timeout": 5.0}


def _public_url(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def client_for(url: str):
    """The redis client of ``url`` in this process (made on first use)."""
    key = (os.getpid(), url)
    c = _clients.get(key)
    if c is not None:
        return c
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ImportError("shmkit's Redis/Valkey backend needs the redis package: "
                          "pip install 'shmkit[redis]' (or pip install redis)") from None
    real = re.sub(r"^valkey(s?)://", r"redis\1://", url)
    opts = {k: v for k, v in _DEFAULTS.items() if k not in real}
    # No automatic retries: a command resent after a lost connection could
    # run twice (RPUSH, HINCRBY).  The pool reconnects on the next call.
    c = redis.Redis.from_url(real, retry=Retry(NoBackoff(), 0), **opts)
    with _clients_lock:
        return _clients.setdefault(key, c)


def _wrap(fn, noun: str):
    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as e:
            raise translate_errors(e, self) from e
    return call


def translate_errors(e: BaseException, handle: "RemoteHandle") -> BaseException:
    """The shmkit error for a redis-py exception (others unchanged)."""
    mod = type(e).__module__ or ""
    if not mod.startswith("redis"):
        return e
    from redis import exceptions as rx

    noun = type(handle).noun
    if isinstance(e, (rx.ConnectionError, rx.TimeoutError)):
        return ServerConnectionError(
            f"{noun} {handle.segment_name!r}: the server at {_public_url(handle.url)} "
            f"did not answer ({e}); the handle reconnects on its next call")
    if isinstance(e, rx.ResponseError) and "WRONGTYPE" in str(e):
        return _shmkit.CorruptSegmentError(
            f"{noun} {handle.segment_name!r}: its key on the server holds another type "
            f"of value ({e})")
    return e


def translating(cls):
    """Class decorator: every method of ``cls`` raises shmkit errors
    instead of redis-py's (generators translate their own)."""
    for name, fn in list(vars(cls).items()):
        if callable(fn) and not isinstance(fn, (staticmethod, classmethod, type)) \
                and name not in ("__new__", "__iter__"):
            setattr(cls, name, _wrap(fn, cls.noun))
    return cls


# Create or attach in one step.  KEYS[1] meta.  ARGV: kind, mode ("new",
# "old" or "any"), then field/value pairs stored on creation.  Returns
# {"created"} or {"exists", meta...} or {"missing"}.
_OPEN = """
local cur = redis.call('HGETALL', KEYS[1])
if #cur > 0 then
  if ARGV[2] == 'new' then return {'taken'} end
  return {'exists', cur}
end
if ARGV[2] == 'old' then return {'missing'} end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], unpack(ARGV, 3))
return {'created'}
"""


class RemoteHandle(Handle):
    """Base of the server-backed classes; ``kind``/``noun`` per class.  The
    ``with`` statement is the shared-memory handles' (shmkit._handle)."""

    kind = ""
    noun = ""
    _scripts: Dict[Tuple[int, str, str], Any] = {}

    def _setup(self, name: str, url: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{self.noun} name must be a str")
        if not _shmkit.name_valid(name):
            raise ValueError(f"invalid name {name!r}: use letters, digits, '.', '_' and '-'")
        self.segment_name = name
        self.object_name = self.kind
        self.url = url
        self.closed = False
        self.created = False
        tag = "{shmkit:" + name + "}"
        self._key = f"{tag}:{self.kind}"
        self._meta = f"{tag}:{self.kind}:meta"

    @property
    def _r(self):
        if self.closed:
            raise ValueError(f"operation on a closed {self.noun}")
        return client_for(self.url)

    def _script(self, source: str):
        """The registered (EVALSHA) form of a Lua script for this client."""
        r = self._r      # the closed check
        key = (os.getpid(), self.url, source)
        s = RemoteHandle._scripts.get(key)
        if s is None:
            s = RemoteHandle._scripts[key] = r.register_script(source)
        return s

    def _open(self, create: Optional[bool], params: Dict[str, Any]) -> Dict[str, str]:
        """Create or attach; the meta fields of the object (str -> str)."""
        mode = "new" if create is True else "old" if create is False else "any"
        flat = []
        for k, v in params.items():
            flat += [k, str(v)]
        res = self._script(_OPEN)(keys=[self._meta], args=[self.kind, mode, *flat])
        status = res[0].decode()
        if status == "taken":
            raise FileExistsError(f"{self.noun} {self.segment_name!r} already exists on "
                                  f"{_public_url(self.url)} (create=None attaches to it)")
        if status == "missing":
            raise FileNotFoundError(f"no {self.noun} {self.segment_name!r} on "
                                    f"{_public_url(self.url)} (create=None makes it)")
        if status == "created":
            self.created = True
            return {k: str(v) for k, v in params.items()}
        flat = [x.decode() for x in res[1]]
        return dict(zip(flat[::2], flat[1::2]))

    # ---- lifecycle (the same words as the shared-memory handles) ----

    def close(self) -> None:
        """Close this handle (the object stays on the server)."""
        self.closed = True

    def unlink(self) -> None:
        """Remove this object's name from the server: every structure
        named ``segment_name`` is deleted (as unlinking a segment does)."""
        tag = "{shmkit:" + self.segment_name + "}"
        keys = []
        for k in KINDS:
            keys += [f"{tag}:{k}", f"{tag}:{k}:meta"]
        client_for(self.url).delete(*keys)

    def _state(self) -> Dict[str, Any]:
        """What a pickled handle carries besides (url, name)."""
        return {}

    def __reduce__(self):
        if self.closed:
            raise ValueError(f"cannot pickle a closed {self.noun}")
        return (_reopen, (type(self), self.url, self.segment_name, self._state()))


def seq_index(i: Any, length: int, what: str, type_msg: str) -> int:
    """A Python index (negative counts from the end) into ``length`` items:
    TypeError / IndexError as the shared-memory sequences raise them."""
    if not hasattr(i, "__index__") or isinstance(i, float):
        raise TypeError(f"{type_msg}, not {type(i).__name__}")
    i = i.__index__()
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"{what} index out of range")
    return i


def _reopen(cls, url: str, name: str, state: Dict[str, Any]):
    """Unpickle a handle without contacting the server (it connects on
    first use)."""
    self = cls.__new__(cls)
    self._setup(name, url)
    self._restore(state)
    return self

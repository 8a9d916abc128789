"""The behaviour every structure handle shares through the C handle base
(SHK_PY_HANDLE_HEAD, python/shmkit/_ext/py_handle.c): the names and
``created``, ``closed``, close() twice, operations on a closed or never
initialised handle, and a second __init__.  Parametrized over every handle
type, so a type that stops using the base (or a base that breaks one type)
fails here."""
import pytest

import shmkit
from shmkit import _shmkit

# C type, __init__ args after (segment, name) that create the object, an
# operation that needs an open handle.
TYPES = {
    "Array": (_shmkit.Array, (_shmkit.DT_INT64, 4), lambda h: h[0]),
    "Bitset": (_shmkit.Bitset, (64,), lambda h: h.count()),
    "Queue": (_shmkit.Queue, (), lambda h: h.qsize()),
    "Stack": (_shmkit.Stack, (), lambda h: len(h)),
    "FreeListAllocator": (_shmkit.FreeListAllocator, (4096,), lambda h: h.available_bytes()),
    "BumpAllocator": (_shmkit.BumpAllocator, (4096,), lambda h: h.available_bytes()),
    "SlabAllocator": (_shmkit.SlabAllocator, (4096, 64), lambda h: h.available_bytes()),
    "SharedDict": (_shmkit.Dict, (), lambda h: len(h)),
}
# How to open an object that must already exist (FileNotFoundError if it
# does not); None for the types that always create on open.
MUST_EXIST = {"Queue": None, "Stack": None, "SharedDict": {"create": False}}


@pytest.fixture
def seg(shm_name):
    s = shmkit.Segment(shm_name, size=1 << 20, create=True)
    yield s
    s.close()


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_names_created_and_close(seg, kind):
    cls, args, op = TYPES[kind]
    h = cls.__new__(cls)
    cls.__init__(h, seg, "obj", *args)
    assert (h.segment_name, h.object_name, h.created, h.closed) == (seg.name, "obj", True, False)
    op(h)
    other = cls.__new__(cls)
    cls.__init__(other, seg, "obj")          # attach: not created
    assert other.created is False and other.object_name == "obj"
    other.close()
    h.close()
    h.close()                                # twice is fine
    assert h.closed
    with pytest.raises(ValueError, match=f"closed {kind}"):
        op(h)
    # a closed handle cannot be re-initialised: it stays closed
    with pytest.raises(RuntimeError, match=f"{kind} already initialised"):
        cls.__init__(h, seg, "obj")
    assert h.closed and h.object_name == "obj"


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_open_handle_cannot_be_reinitialised(seg, kind):
    cls, args, op = TYPES[kind]
    h = cls.__new__(cls)
    cls.__init__(h, seg, "obj", *args)
    with pytest.raises(RuntimeError, match="already initialised"):
        cls.__init__(h, seg, "other", *args)
    assert h.object_name == "obj" and not h.closed
    op(h)
    h.close()


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_uninitialised_handle_is_closed(kind):
    cls, _, op = TYPES[kind]
    h = cls.__new__(cls)
    assert h.closed
    assert h.segment_name is None and h.object_name is None and h.created is False
    with pytest.raises(ValueError, match=f"closed {kind}"):
        op(h)
    h.close()                                # harmless
    del h                                    # dealloc without a C handle


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_failed_init_leaves_handle_closed(seg, kind):
    cls, _, op = TYPES[kind]
    h = cls.__new__(cls)
    with pytest.raises(TypeError):
        cls.__init__(h, "not a segment", "obj")
    must_exist = MUST_EXIST.get(kind, {})
    if must_exist is not None:
        with pytest.raises(FileNotFoundError):
            cls.__init__(h, seg, "missing", **must_exist)
    assert h.closed
    with pytest.raises(ValueError, match="closed"):
        op(h)


@pytest.mark.parametrize("kind", sorted(TYPES))
@pytest.mark.parametrize("bad", ["a\x00b", "", "x" * 64])
def test_invalid_object_name_is_refused(seg, kind, bad):
    # A NUL would cut the name short in C ("a\x00b" opening or creating
    # "a"): every type refuses it, and nothing is created.
    cls, args, op = TYPES[kind]
    h = cls.__new__(cls)
    with pytest.raises(ValueError, match="invalid object name"):
        cls.__init__(h, seg, bad, *args)
    assert h.closed
    assert [o["name"] for o in seg.objects()] == []
    with pytest.raises(ValueError, match="invalid object name"):
        seg.lookup(bad)

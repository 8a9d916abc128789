"""Bad input across every public structure: wrong types, negative
and huge sizes, closed handles, and a segment unlinked by another process
while attached.  Each must raise a clear exception and change nothing.

One table row per structure: `make` builds a fresh one, `calls` are
(method, args, expected exception) triples, `state` reads what must not
change."""
import multiprocessing as mp
import os

import pytest

import shmkit

HUGE = 1 << 70


def _freelist(name):
    a = shmkit.FreeListAllocator(name, capacity=1 << 16, create=True)
    a.allocate(32)
    return a


def _bitset(name):
    b = shmkit.Bitset(name, 100, create=True)
    b.set(3)
    return b


def _array(name):
    a = shmkit.Array(name, "int32", 10, create=True)
    a[2] = 7
    return a


def _queue(name):
    q = shmkit.Queue(name, maxsize=4, create=True, allow_pickle=False)
    q.put(b"first")
    return q


def _stack(name):
    st = shmkit.Stack(name, create=True, allow_pickle=False)
    st.push(b"bottom")
    return st


def _dict(name):
    d = shmkit.SharedDict(name, create=True, allow_pickle=False)
    d["k"] = 1
    return d


ROWS = {
    "queue": (
        _queue,
        [("put", ({"a": 1},), TypeError), ("put", (b"x", True, -1), ValueError),
         ("put", (b"x", True, "soon"), TypeError), ("get", (True, -1), ValueError),
         ("get_many", (-1,), ValueError), ("get_many", ("3",), TypeError),
         ("put_many", (5,), TypeError), ("put_many", ([b"ok", 7],), TypeError)],
        lambda q: (q.qsize(), q.check()),
    ),
    "stack": (
        _stack,
        [("push", ([1],), TypeError), ("push", ("text",), TypeError),
         ("pop", (1, 2), TypeError)],
        lambda st: (len(st), st.peek()),
    ),
    "dict": (
        _dict,
        [("__getitem__", ([1],), TypeError), ("__getitem__", ("nokey",), KeyError),
         ("__setitem__", (1.5, 1), TypeError), ("__setitem__", ("k", object()), TypeError),
         ("__delitem__", ("nokey",), KeyError), ("incr", ("k", "x"), TypeError),
         ("compare_and_swap", ({}, 1, 2), TypeError), ("update", (5,), TypeError),
         ("pop", ("nokey",), KeyError)],
        lambda d: dict(d.items()),
    ),
    "freelist": (
        _freelist,
        [("allocate", (-1,), ValueError), ("allocate", (HUGE,), (ValueError, OverflowError)),
         ("allocate", ("x",), TypeError), ("allocate", (None,), TypeError),
         ("free", (-5,), ValueError), ("free", (HUGE,), (ValueError, OverflowError)),
         ("free", (1.0,), TypeError), ("read", (0, -1), ValueError),
         ("read", (HUGE, 1), (ValueError, OverflowError)), ("write", (0, 123), TypeError),
         ("view", (1 << 40, 1), ValueError), ("allocate", (), TypeError)],
        lambda a: (a.available_bytes(), a.check()["live_blocks"]),
    ),
    "bitset": (
        _bitset,
        [("set", (100,), IndexError), ("set", (-101,), IndexError), ("set", (HUGE,), IndexError),
         ("set", ("1",), TypeError), ("clear", (1.5,), TypeError), ("test", (None,), TypeError),
         ("flip", (HUGE,), IndexError), ("__setitem__", (1, "yes"), (TypeError, ValueError)),
         ("__getitem__", ("a",), TypeError)],
        lambda b: (b.count(), b.test(3)),
    ),
    "array": (
        _array,
        [("__getitem__", (10,), IndexError), ("__getitem__", (-11,), IndexError),
         ("__setitem__", (0, "x"), TypeError), ("__setitem__", (0, 1 << 40), (OverflowError, ValueError)),
         ("add", (HUGE, 1), IndexError), ("add", (0, "1"), TypeError),
         ("add", (2, 1 << 40), (OverflowError, ValueError)),
         ("compare_and_swap", (0, None, 1), TypeError), ("exchange", (99, 1), IndexError)],
        lambda a: a.tolist(),
    ),
}


def _call(obj, method, args):
    return getattr(obj, method)(*args)


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_bad_calls_raise_and_change_nothing(shm_name, kind):
    make, calls, state = ROWS[kind]
    obj = make(shm_name)
    before = state(obj)
    for method, args, exc in calls:
        with pytest.raises(exc):
            _call(obj, method, args)
        assert state(obj) == before, f"{kind}.{method}{args} changed the structure"
    obj.close()


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_closed_handle_raises_value_error(shm_name, kind):
    make, calls, _ = ROWS[kind]
    obj = make(shm_name)
    obj.close()
    obj.close()                     # closing twice is fine
    assert obj.closed
    for method, args, _ in calls:
        if method.startswith("__"):
            continue
        with pytest.raises(ValueError, match="closed"):
            _call(obj, method, tuple(a if isinstance(a, int) and 0 <= a < 1 << 20 else 0
                                     for a in args) or ())


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_attach_missing_and_foreign(shm_name, kind):
    make, _, _ = ROWS[kind]
    cls = type(make(shm_name))
    shmkit.unlink(shm_name)
    with pytest.raises(FileNotFoundError):
        cls(shm_name, create=False)
    with open(f"/dev/shm/{shm_name}", "wb") as f:
        f.write(os.urandom(50000))
    with pytest.raises(shmkit.CorruptSegmentError):
        cls(shm_name, create=False)


def _unlink_it(name):
    shmkit.unlink(name)


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_segment_unlinked_by_another_process(shm_name, kind):
    """POSIX semantics: the name goes, the memory stays for those attached.
    Our handle keeps working; attaching by name then fails cleanly."""
    make, _, state = ROWS[kind]
    obj = make(shm_name)
    before = state(obj)
    p = mp.get_context("spawn").Process(target=_unlink_it, args=(shm_name,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert state(obj) == before
    obj.check() if hasattr(obj, "check") else None
    with pytest.raises(FileNotFoundError):
        type(obj)(shm_name, create=False)
    obj.close()


def test_wrong_structure_type_in_segment(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        seg.bitset("b", 10)
        with pytest.raises(TypeError):
            seg.array("b", "int8", 4)
        with pytest.raises(TypeError):
            seg.allocator("b", capacity=100)


@pytest.mark.parametrize("size, exc", [(1 << 64, ValueError), (HUGE, ValueError), (-1, ValueError),
                                       ((64 << 30) + 1, ValueError), (True, TypeError),
                                       (False, TypeError), (1.0, TypeError), ("1", TypeError)])
@pytest.mark.parametrize("arg", ["size", "max_size"])
def test_segment_size_out_of_range_or_not_an_int(shm_name, arg, size, exc):
    with pytest.raises(exc, match=arg):
        shmkit.Segment(shm_name, create=True, **{arg: size})
    # nothing was created, and the standalone structures check the same way
    assert not os.path.exists(f"/dev/shm/{shm_name}")
    with pytest.raises(exc, match=arg):
        shmkit.SharedDict(shm_name, create=True, **{arg: size})
    assert not os.path.exists(f"/dev/shm/{shm_name}")


@pytest.mark.parametrize("length", [True, False])
def test_array_and_bitset_lengths_are_not_bools(shm_name, length):
    with pytest.raises(TypeError, match="bool"):
        shmkit.Array(shm_name, "int8", length, create=True)
    with pytest.raises(TypeError, match="bool"):
        shmkit.Bitset(shm_name, length, create=True)
    with shmkit.Segment(shm_name, create=True) as seg:
        with pytest.raises(TypeError, match="bool"):
            seg.array("a", "int8", length)
        with pytest.raises(TypeError, match="bool"):
            seg.bitset("b", length)
        assert seg.objects() == []


def test_full_object_directory_says_so(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        n = 0
        with pytest.raises(shmkit.OutOfMemoryError, match=r"directory is full \(64 named"):
            while True:
                seg.bitset(f"b{n}", 8)
                n += 1
        assert n == len(seg.objects()) == 64
        seg.bitset("b0")             # opening an existing object still works
        with pytest.raises(shmkit.OutOfMemoryError, match="directory is full"):
            seg.dict("one-more")


def test_get_view_of_a_0d_array(shm_name):
    np = pytest.importorskip("numpy")
    with shmkit.SharedDict(shm_name, create=True) as d:
        d["z"] = np.array(5.5)
        d["e"] = np.zeros((0, 3), np.int16)
        v = d.get_view("z")
        assert v.shape == () and v[()] == 5.5 and not v.flags.writeable
        assert d.get_view("e").shape == (0, 3)
        assert d["z"].shape == () and d["z"] == 5.5


class _Rewriter:
    """An `expected` whose comparison writes to the key being compared."""

    def __init__(self, d):
        self.d, self.calls = d, 0

    def __eq__(self, other):
        self.calls += 1
        self.d["k"] = self.calls
        return True

    __hash__ = None


def test_compare_and_swap_whose_eq_rewrites_the_key_ends(shm_name):
    with shmkit.SharedDict(shm_name, create=True) as d:
        d["k"] = 0
        exp = _Rewriter(d)
        with pytest.raises(RuntimeError, match="changed during each of"):
            d.compare_and_swap("k", exp, "new")
        assert exp.calls <= 100_000
        assert d["k"] == exp.calls   # the last rewrite stands; "new" was not written

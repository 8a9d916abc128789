"""Array: every dtype's ranges and conversions, atomic add / exchange /
compare-and-swap, slices, the zero-copy buffer protocol, errors (array
unchanged), real processes (fork and spawn) racing on the same elements,
and a hypothesis model against a Python list."""
import array as pyarray
import os
import pickle

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import shmkit
from conftest import unique_name
from shmkit.array import DTYPES, Array, dtype_code

INT_RANGES = {
    "int8": (-2 ** 7, 2 ** 7 - 1), "int16": (-2 ** 15, 2 ** 15 - 1),
    "int32": (-2 ** 31, 2 ** 31 - 1), "int64": (-2 ** 63, 2 ** 63 - 1),
    "uint8": (0, 2 ** 8 - 1), "uint16": (0, 2 ** 16 - 1),
    "uint32": (0, 2 ** 32 - 1), "uint64": (0, 2 ** 64 - 1),
}


@pytest.fixture
def seg(shm_name):
    with shmkit.Segment(shm_name, create=True, unlink_on_exit=True) as s:
        yield s


@pytest.mark.parametrize("dtype", sorted(INT_RANGES))
def test_integer_ranges(seg, dtype):
    lo, hi = INT_RANGES[dtype]
    a = seg.array("a", dtype, 6)
    assert a.dtype == dtype and len(a) == 6 and a.length == 6
    assert a.tolist() == [0] * 6
    a[0], a[1] = lo, hi
    assert (a[0], a[1], a[-6], a[-5]) == (lo, hi, lo, hi)
    for bad in (lo - 1, hi + 1, 2 ** 64, -(2 ** 64), 10 ** 30):
        with pytest.raises(OverflowError):
            a[2] = bad
        with pytest.raises(OverflowError):
            a.exchange(2, bad)
        with pytest.raises(OverflowError):
            a.fill(bad)
    for bad in (1.0, 1.5, "1", None, b"1"):
        with pytest.raises(TypeError):
            a[2] = bad
        with pytest.raises(TypeError):
            a.add(2, bad)
    a[3] = np.int8(5)                  # anything with __index__
    a[4] = True
    assert a[3] == 5 and a[4] == 1 and type(a[3]) is int
    # checked add: refuses past either end, element unchanged
    with pytest.raises(OverflowError, match="unchanged"):
        a.add(1, 1)
    with pytest.raises(OverflowError):
        a.add(0, -1)
    assert (a[0], a[1]) == (lo, hi)
    assert a.add(0, hi - lo) == lo     # the whole range in one step
    assert a[0] == hi
    assert a.add(0, -(hi - lo)) == hi
    assert a[0] == lo
    with pytest.raises(OverflowError):
        a.add(0, 2 ** 64)
    with pytest.raises(OverflowError):
        a.add(0, -(2 ** 64))
    # wrapping add goes round, any int is taken modulo 2**bits
    assert a.add(1, 1, wrap=True) == hi
    assert a[1] == lo
    assert a.add(1, -1, wrap=True) == lo
    assert a[1] == hi
    assert a.add(1, 2 ** 70 + 1, True) == hi and a[1] == lo
    # exchange / compare_and_swap
    assert a.exchange(5, hi) == 0
    assert a.compare_and_swap(5, hi - 1, 7) is False and a[5] == hi
    assert a.compare_and_swap(5, hi, 7) is True and a[5] == 7
    assert a.compare_and_swap(5, hi + 1, 8) is False           # cannot match
    assert a.compare_and_swap(5, 10 ** 30, 8) is False
    with pytest.raises(OverflowError):
        a.compare_and_swap(5, 7, hi + 1)
    assert a[5] == 7
    assert a.check()["dtype"] == dtype
    a.close()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floats(seg, dtype):
    a = seg.array("f", dtype, 4)
    a[0] = 0.5
    a[1] = 3                           # ints are fine in a float array
    a[2] = np.float32(1.25)
    assert a[:3] == [0.5, 3.0, 1.25] and type(a[0]) is float
    assert a.add(0, 0.25) == 0.5 and a[0] == 0.75
    assert a.add(0, 1) == 0.75 and a[0] == 1.75
    with pytest.raises(TypeError):
        a.add(0, 1, wrap=True)
    for bad in ("x", None, b"1", [1.0]):
        with pytest.raises(TypeError):
            a[3] = bad
    with pytest.raises(OverflowError):
        a[3] = 10 ** 400                   # an int too large for any float
    a[3] = 0.1
    assert a[3] == (float(np.float32(0.1)) if dtype == "float32" else 0.1)
    if dtype == "float32":
        a[3] = 1e300
        assert a[3] == float("inf")
        assert a.compare_and_swap(3, float("inf"), 0.1) is True
        assert a.compare_and_swap(3, 0.1, 2.0) is False      # 0.1 is no float32
        assert a.compare_and_swap(3, float(np.float32(0.1)), 2.0) is True
    a[3] = float("nan")
    assert a.compare_and_swap(3, float("nan"), 1.0) is True  # bitwise compare
    a[3] = -0.0
    assert a.compare_and_swap(3, 0.0, 1.0) is False
    assert a.exchange(3, 2.5) == 0.0 and a[3] == 2.5
    a.close()


def test_dtype_parsing():
    expect = {
        "int64": "int64", "i8": "int64", "<i8": "int64", "=i8": "int64", "q": "int64",
        "l": "int64", "b": "int8", "B": "uint8", "h": "int16", "H": "uint16",
        "i": "int32", "I": "uint32", "Q": "uint64", "f": "float32", "d": "float64",
        "f4": "float32", "f8": "float64", "u1": "uint8", "|u1": "uint8", "|i1": "int8",
        "float": "float64", "double": "float64",
        int: "int64", float: "float64", np.int16: "int16", np.dtype("uint32"): "uint32",
        np.float32: "float32", np.dtype("<f8"): "float64",
    }
    for spec, name in expect.items():
        assert dtype_code(spec) == DTYPES[name], spec
    for code in "bBhHiIlLqQfd":                # agrees with the array module
        a = pyarray.array(code)
        assert np.dtype(list(DTYPES)[dtype_code(code) - 1]).itemsize == a.itemsize
    for bad in ("int128", "e", "f2", "", "?", ">i8", "complex"):
        with pytest.raises(ValueError):
            dtype_code(bad)
    for bad in (None, 8, 3.0, bytes, np.complex64):
        with pytest.raises((TypeError, ValueError)):
            dtype_code(bad)


def test_slices(seg):
    a = seg.array("s", "int16", 10)
    a[:] = range(10)
    assert a[:] == list(range(10)) and a[2:5] == [2, 3, 4]
    assert a[::-1] == list(range(9, -1, -1)) and a[::3] == [0, 3, 6, 9]
    assert a[100:] == [] and a[-2:] == [8, 9]
    a[::2] = [0, 0, 0, 0, 0]
    assert a[:] == [0, 1, 0, 3, 0, 5, 0, 7, 0, 9]
    a[8:1:-3] = (-1, -2, -3)
    assert a[:] == [0, 1, -3, 3, 0, -2, 0, 7, -1, 9]
    a[0:3] = np.array([4, 5, 6])
    before = a[:]
    with pytest.raises(ValueError, match="fixed"):
        a[0:3] = [1, 2]
    with pytest.raises(OverflowError):
        a[0:3] = [1, 2, 40000]             # the last is bad: nothing stored
    with pytest.raises(TypeError):
        a[0:3] = [1, 2.5, 3]
    with pytest.raises(TypeError):
        a[0:3] = 5
    with pytest.raises(TypeError):
        del a[0]
    with pytest.raises(TypeError):
        del a[0:2]
    assert a[:] == before
    assert list(a) == before and list(reversed(a[:])) == before[::-1]
    a.close()


def test_bad_indexes_and_closed(seg):
    a = seg.array("x", "uint8", 3)
    for bad in (3, -4, 10 ** 30):
        with pytest.raises(IndexError):
            a[bad]
        with pytest.raises(IndexError):
            a[bad] = 1
        with pytest.raises(IndexError):
            a.add(bad, 1)
        with pytest.raises(IndexError):
            a.exchange(bad, 1)
        with pytest.raises(IndexError):
            a.compare_and_swap(bad, 0, 1)
    for bad in ("0", 0.0, None):
        with pytest.raises(TypeError):
            a[bad]
        with pytest.raises(TypeError):
            a.add(bad, 1)
    with pytest.raises(TypeError):
        a.add(0)
    with pytest.raises(TypeError):
        a.add(0, 1, wrap=True, extra=1)
    with pytest.raises(TypeError):
        a.exchange(0)
    with pytest.raises(TypeError):
        a.compare_and_swap(0, 1)
    assert a[:] == [0, 0, 0]
    a.close()
    a.close()
    assert a.closed and "closed" in repr(a)
    for call in (lambda: a[0], lambda: len(a), lambda: a.add(0, 1), lambda: a.tolist(),
                 lambda: memoryview(a), lambda: a.dtype, lambda: a.check(),
                 lambda: a.__setitem__(0, 1), lambda: a.fill(0)):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_construction_errors(shm_name, seg):
    with pytest.raises(ValueError, match="required"):
        Array(shm_name + "n", create=True)
    with pytest.raises(ValueError, match="both"):
        Array(shm_name + "n", "int8")
    for bad in (0, -1):
        with pytest.raises(ValueError):
            Array(shm_name + "n", "int8", bad, create=True)
    with pytest.raises(ValueError, match="at most"):
        Array(shm_name + "n", "int64", 2 ** 40, create=True)
    for bad in ("3", 2.0, None):
        with pytest.raises((TypeError, ValueError)):
            Array(shm_name + "n", "int8", bad, create=True)
    with pytest.raises(FileNotFoundError):
        Array(shm_name + "n", create=False)
    assert not os.path.exists(f"/dev/shm/{shm_name}n")
    with pytest.raises(shmkit.OutOfMemoryError):
        Array(shm_name + "n", "int64", 1 << 20, create=True, max_size=4 << 20)
    assert not os.path.exists(f"/dev/shm/{shm_name}n")   # not left half-made
    seg.array("a", "int32", 5).close()
    with pytest.raises(ValueError, match=r"exists as int32\[5\], not int64\[5\]"):
        seg.array("a", "int64", 5)
    with pytest.raises(ValueError, match="exists as"):
        seg.array("a", "int32", 6)
    seg.bitset("b", 8).close()
    with pytest.raises(TypeError, match="not an Array"):
        seg.array("b", "int8", 8)
    with pytest.raises(FileNotFoundError):
        seg.array("missing")
    with pytest.raises(ValueError):
        seg.array("y" * 64, "int8", 2)


def test_standalone_attach_pickle_open(shm_name):
    a = Array(shm_name, "float64", 100, create=True)
    a[99] = 1.5
    b = Array(shm_name)                        # attach needs only the name
    assert b.dtype == "float64" and len(b) == 100 and b[99] == 1.5
    assert a.created and not b.created
    c = pickle.loads(pickle.dumps(a))
    assert c[99] == 1.5 and c.object_name == "array" and c.segment_name == shm_name
    d = Array(shm_name, "f8", 100)             # matching dtype/length: attach
    assert d[99] == 1.5
    with shmkit.Segment(shm_name, create=False) as seg:
        e = seg.open("array")
        assert isinstance(e, Array) and e[99] == 1.5
        e.close()
    for x in (a, b, c, d):
        x.close()
    with Array(shm_name) as f:
        f.unlink()
    assert not os.path.exists(f"/dev/shm/{shm_name}")


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_buffer_protocol_zero_copy(seg, dtype):
    a = seg.array("buf", dtype, 7)
    x = np.asarray(a)
    assert x.dtype == np.dtype(dtype) and x.shape == (7,) and x.flags.writeable
    mv = memoryview(a)
    assert mv.itemsize == np.dtype(dtype).itemsize and mv.shape == (7,)
    assert np.dtype(mv.format) == np.dtype(dtype) and not mv.readonly
    x[3] = 9
    assert a[3] == 9                           # numpy -> shared memory
    a[4] = 11
    assert x[4] == 11 and mv[4] == 11          # shared memory -> numpy
    y = a.as_numpy()
    assert np.shares_memory(x, y)
    a.close()
    # the exports keep the mapping alive after close()
    x[5] = 1
    assert y[5] == 1 and mv[5] == 1
    mv.release()


def test_views_survive_unlink_and_close(shm_name):
    a = Array(shm_name, "int64", 1000, create=True)
    x = np.asarray(a)
    a.unlink()
    a.close()
    x[:] = np.arange(1000)
    assert int(x.sum()) == 999 * 1000 // 2
    del x


# ---------------------------------------------------------------- processes

N_ADDS = 5_000


def _adder(name, q):
    try:
        a = Array(name)
        tickets = [a.add(0, 1) for _ in range(N_ADDS)]      # fetch-add tickets
        for _ in range(N_ADDS):
            a.add(1, -3, wrap=True)
            while True:                                     # CAS increment loop
                v = a[2]
                if a.compare_and_swap(2, v, v + 1):
                    break
        f = Array(name + "-f")
        for _ in range(N_ADDS):
            f.add(0, 0.5)
            f.add(1, 1)
        a.close()
        f.close()
        q.put(tickets)
    except BaseException as e:
        q.put(repr(e))


def test_processes_atomic_adds_sum_exactly(shm_name, mp_context):
    a = Array(shm_name, "int64", 3, create=True)
    f = Array(shm_name + "-f", "float32", 2, create=True)
    try:
        q = mp_context.Queue()
        procs = [mp_context.Process(target=_adder, args=(shm_name, q)) for _ in range(4)]
        for p in procs:
            p.start()
        results = [q.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert all(isinstance(r, list) for r in results), results
        # every fetch-add returned a distinct previous value: no lost update
        assert sorted(t for r in results for t in r) == list(range(4 * N_ADDS))
        assert a[0] == 4 * N_ADDS
        assert a[1] == -3 * 4 * N_ADDS
        assert a[2] == 4 * N_ADDS
        assert f[0] == 0.5 * 4 * N_ADDS and f[1] == 4 * N_ADDS   # exact in float32
        assert a.check()["length"] == 3 and f.check()["dtype"] == "float32"
    finally:
        a.close()
        f.close()
        shmkit.unlink(shm_name + "-f")


def _saturate(name, q):
    try:
        a = Array(name)
        ok = 0
        for _ in range(200):
            try:
                a.add(0, 1)
                ok += 1
            except OverflowError:
                pass
        a.close()
        q.put(ok)
    except BaseException as e:
        q.put(repr(e))


def test_processes_checked_add_never_overflows(shm_name, mp_context):
    a = Array(shm_name, "uint8", 1, create=True)
    a[0] = 55                                   # room for exactly 200 more
    q = mp_context.Queue()
    procs = [mp_context.Process(target=_saturate, args=(shm_name, q)) for _ in range(3)]
    for p in procs:
        p.start()
    oks = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(oks) == 200 and a[0] == 255
    a.close()


# ---------------------------------------------------------------- hypothesis

LEN = 12


class ArrayModel(RuleBasedStateMachine):
    """An int16 array against a Python list with the same checked rules."""

    LO, HI = INT_RANGES["int16"]

    @initialize()
    def setup(self):
        self.name = unique_name("hyparr")
        self.a = Array(self.name, "int16", LEN, create=True)
        self.m = [0] * LEN

    idx = st.integers(-LEN, LEN - 1)
    val = st.integers(-40000, 40000)

    @rule(i=idx, v=val)
    def store(self, i, v):
        if self.LO <= v <= self.HI:
            self.a[i] = v
            self.m[i] = v
        else:
            with pytest.raises(OverflowError):
                self.a[i] = v

    @rule(i=idx, d=val)
    def add(self, i, d):
        new = self.m[i] + d
        if self.LO <= new <= self.HI:
            assert self.a.add(i, d) == self.m[i]
            self.m[i] = new
        else:
            with pytest.raises(OverflowError):
                self.a.add(i, d)

    @rule(i=idx, d=st.integers(-(2 ** 70), 2 ** 70))
    def add_wrap(self, i, d):
        assert self.a.add(i, d, wrap=True) == self.m[i]
        self.m[i] = (self.m[i] + d + 2 ** 15) % 2 ** 16 - 2 ** 15

    @rule(i=idx, v=st.integers(-100, 100))
    def exchange(self, i, v):
        assert self.a.exchange(i, v) == self.m[i]
        self.m[i] = v

    @rule(i=idx, e=st.integers(-3, 3), v=st.integers(-100, 100))
    def cas(self, i, e, v):
        ok = self.m[i] == e
        assert self.a.compare_and_swap(i, e, v) is ok
        if ok:
            self.m[i] = v

    @rule(start=st.integers(-15, 15), stop=st.integers(-15, 15),
          step=st.integers(-4, 4).filter(bool), data=st.data())
    def slice_assign(self, start, stop, step, data):
        n = len(self.m[start:stop:step])
        vals = data.draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
        self.a[start:stop:step] = vals
        self.m[start:stop:step] = vals
        assert self.a[start:stop:step] == self.m[start:stop:step]

    @invariant()
    def agrees(self):
        if hasattr(self, "a"):
            assert self.a[:] == self.m
            assert np.asarray(self.a).tolist() == self.m

    def teardown(self):
        if hasattr(self, "a"):
            self.a.check()
            self.a.close()
            shmkit.unlink(self.name)


TestArrayModel = ArrayModel.TestCase
TestArrayModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def _after_unlink(name, ready, go, q):
    try:
        a = Array(name)
        b = shmkit.Bitset(name + "-b")
        ready.set()
        go.wait(60)
        # the names are gone, but this process's mappings stay valid
        a.add(0, 5)
        b.set(3)
        out = [a[0], b.test(3), a.check()["length"], b.check()["count"]]
        try:
            Array(name, create=False)
            out.append("attached?!")
        except FileNotFoundError:
            out.append("gone")
        a.close()
        b.close()
        q.put(out)
    except BaseException as e:
        q.put(repr(e))


def test_use_after_another_process_unlinks(shm_name, mp_context):
    a = Array(shm_name, "int32", 4, create=True)
    b = shmkit.Bitset(shm_name + "-b", 8, create=True)
    ready, go, q = mp_context.Event(), mp_context.Event(), mp_context.Queue()
    p = mp_context.Process(target=_after_unlink, args=(shm_name, ready, go, q))
    p.start()
    assert ready.wait(60)
    a.unlink()
    b.unlink()
    a[0] = 1
    go.set()
    assert q.get(timeout=60) == [6, True, 4, 1, "gone"]
    p.join(60)
    assert p.exitcode == 0
    assert a[0] == 6 and b[3]          # the child's writes reached us too
    a.close()
    b.close()

"""Bitset: the API, errors (structure unchanged), the zero-copy numpy view,
pickling, real processes (fork and spawn) racing on the same words, and a
hypothesis model against a Python set."""
import pickle

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import shmkit
from conftest import unique_name
from shmkit.bitset import Bitset


@pytest.fixture
def bits(shm_name):
    b = Bitset(shm_name, 130, create=True)
    yield b
    b.close()


def test_single_bit_ops_return_previous(bits):
    assert len(bits) == 130 and bits.length == 130
    assert bits.set(5) is False
    assert bits.set(5) is True
    assert bits.test(5) is True and bits[5] is True
    assert bits.flip(64) is False and bits.flip(64) is True and bits.flip(64) is False
    assert bits.clear(5) is True and bits.clear(5) is False
    bits[129] = True
    assert bits[-1] is True and bits.test(-1) is True
    bits[-1] = 0
    assert bits[129] is False
    bits[0] = 1
    assert bits.count() == 2          # 0 and 64
    assert bits[0:3] == [True, False, False]
    assert bits[::64] == [True, True, False]
    assert list(bits)[:2] == [True, False] and len(list(bits)) == 130
    assert list(bits.iter_set()) == [0, 64]
    assert bits.check() == {"length": 130, "words": 3, "count": 2}


def test_whole_set_ops_and_tail(shm_name):
    for n in (1, 63, 64, 65, 1000):
        with Bitset(f"{shm_name}-{n}", n, create=True) as b:
            try:
                assert not b.any() and not b.all()
                assert b.find_first_set() is None
                assert b.find_first_clear() == 0
                b.set_all()
                assert b.count() == n and b.all() and b.any()
                assert b.find_first_clear() is None
                assert b.check()["count"] == n     # bits past the end stay 0
                assert int(b.as_numpy()[-1]).bit_count() == (n % 64 or 64)
                b.clear(n - 1)
                assert b.find_first_clear() == n - 1
                assert b.find_first_set(n - 1) is None
                assert b.find_first_clear(-1) == n - 1
                b.clear_all()
                assert b.count() == 0
                b.set(n - 1)
                assert b.find_first_set() == n - 1
                assert b.find_first_set(n) is None
                assert b.find_first_set(10 ** 30) is None
                assert b.find_first_set(-10 ** 30) == n - 1
            finally:
                b.unlink()


def test_bad_input_changes_nothing(bits, shm_name):
    bits.set(7)
    before = bits.as_numpy().copy()
    for bad in (130, -131, 10 ** 30, -(10 ** 30)):
        for op in (bits.set, bits.clear, bits.flip, bits.test, bits.__getitem__):
            with pytest.raises(IndexError):
                op(bad)
        with pytest.raises(IndexError):
            bits[bad] = True
    for bad in ("1", 1.0, None, [1]):
        for op in (bits.set, bits.clear, bits.flip, bits.test, bits.__getitem__):
            with pytest.raises(TypeError):
                op(bad)
    with pytest.raises(ValueError):
        bits[3] = 2
    with pytest.raises(TypeError):
        bits[3] = "yes"
    with pytest.raises(TypeError):
        del bits[3]
    with pytest.raises(TypeError):
        bits[0:2] = [True, True]
    with pytest.raises(TypeError):
        bits.find_first_set("0")
    assert (bits.as_numpy() == before).all()
    # construction errors
    for bad in (0, -1, 2 ** 38 + 1, 10 ** 30):
        with pytest.raises(ValueError):
            Bitset(shm_name + "x", bad, create=True)
    for bad in ("10", 1.5, True):
        with pytest.raises(TypeError):
            Bitset(shm_name + "x", bad, create=True)
    with pytest.raises(ValueError, match="length= is required"):
        Bitset(shm_name + "x", create=True)
    with pytest.raises(FileNotFoundError):
        Bitset(shm_name + "x", create=False)
    with pytest.raises(FileExistsError):
        Bitset(shm_name, 130, create=True)
    with pytest.raises(ValueError, match="exists with length 130, not 131"):
        Bitset(shm_name, 131)
    import os
    assert not os.path.exists(f"/dev/shm/{shm_name}x")   # failures leave nothing


def test_attach_pickle_and_segment(shm_name):
    b = Bitset(shm_name, 1000, create=True)
    b.set(999)
    b2 = Bitset(shm_name)                      # attach: no length needed
    assert b2.length == 1000 and b2[999] and not b2.created and b.created
    b3 = pickle.loads(pickle.dumps(b))
    assert b3.test(999) and b3.object_name == "bitset" and b3.segment_name == shm_name
    for x in (b, b2, b3):
        x.close()
    with shmkit.Segment(shm_name + "s", create=True, unlink_on_exit=True) as seg:
        f = seg.bitset("flags", 10)
        g = seg.bitset("flags")
        f.set(3)
        assert g.test(3)
        h = seg.open("flags")
        assert isinstance(h, Bitset) and h[3]
        assert pickle.loads(pickle.dumps(h))[3]
        seg.array("arr", "int8", 4).close()
        with pytest.raises(TypeError, match="not a Bitset"):
            seg.bitset("arr", 10)
        with pytest.raises(FileNotFoundError):
            seg.bitset("nope")
        with pytest.raises(ValueError):
            seg.bitset("", 10)
        for x in (f, g, h):
            x.close()


def test_closed_handle(bits):
    bits.close()
    bits.close()                               # idempotent
    assert bits.closed
    for call in (lambda: bits.set(0), lambda: bits.count(), lambda: bits[0],
                 lambda: len(bits), lambda: bits.as_numpy(), lambda: bits.check(),
                 lambda: bits.find_first_set(), lambda: bits.words(),
                 lambda: bits.__setitem__(0, 1), lambda: bits.length):
        with pytest.raises(ValueError, match="closed"):
            call()
    with pytest.raises(ValueError):
        with bits:
            pass
    assert "closed" in repr(bits)


def test_numpy_view_is_zero_copy_and_outlives_close(shm_name):
    b = Bitset(shm_name, 200, create=True)
    w = b.as_numpy()
    assert w.dtype == np.uint64 and w.shape == (4,) and w.flags.writeable
    b.set(65)
    assert w[1] == 2
    w[0] = 1 << 3                              # numpy writes are seen by the bitset
    assert b[3] and b.count() == 2
    mv = memoryview(b)
    assert mv.format == "Q" and mv.itemsize == 8 and mv.shape == (4,) and mv.nbytes == 32
    words = b.words()
    assert words.format == "Q" and words[1] == 2
    bools = b.to_numpy()
    assert bools.dtype == bool and bools.shape == (200,)
    assert sorted(np.flatnonzero(bools)) == [3, 65] == list(b.iter_set())
    b.close()
    shmkit.unlink(shm_name)
    # views keep the mapping alive after close() and unlink
    assert w[1] == 2 and mv[1] == 2 and words[0] == 8
    w[2] = 5
    assert mv[2] == 5
    mv.release()
    words.release()


def test_check_detects_stray_tail_bits(shm_name):
    with Bitset(shm_name, 70, create=True) as b:
        w = b.as_numpy()
        w[1] |= np.uint64(1 << 63)             # a bit past the end, by hand
        assert b.count() == 0                  # masked: count does not lie
        with pytest.raises(shmkit.CorruptSegmentError):
            b.check()
        w[1] = 0
        assert b.check()["count"] == 0
        del w


# ---------------------------------------------------------------- processes

NBITS = 20_000


def _claim(name, q):
    """Try to claim every bit; report the ones this process won."""
    try:
        b = Bitset(name)
        won = [i for i in range(NBITS) if not b.set(i)]
        with shmkit.Segment(name, create=False) as seg, seg.bitset("flips") as f:
            for i in range(NBITS):             # an even number of flips: net 0
                f.flip(i)
                f.flip(i)
        b.close()
        q.put(won)
    except BaseException as e:
        q.put(repr(e))


def test_processes_claim_each_bit_exactly_once(shm_name, mp_context):
    b = Bitset(shm_name, NBITS, create=True)
    with shmkit.Segment(shm_name, create=False) as seg:
        flips = seg.bitset("flips", NBITS)
    q = mp_context.Queue()
    procs = [mp_context.Process(target=_claim, args=(shm_name, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert all(isinstance(r, list) for r in results), results
    won = sorted(i for r in results for i in r)
    assert won == list(range(NBITS))           # every bit claimed exactly once
    assert b.count() == NBITS and b.all()
    assert b.check()["count"] == NBITS
    assert flips.count() == 0 and not flips.any()   # no flip was lost
    b.close()
    flips.close()


def _disjoint(name, k, q):
    try:
        b = Bitset(name)
        for _ in range(3):
            for i in range(k, NBITS, 4):       # neighbours share words
                b.set(i)
                b.clear(i)
            for i in range(k, NBITS, 4):
                b.set(i)
        b.close()
        q.put("ok")
    except BaseException as e:
        q.put(repr(e))


def test_processes_disjoint_bits_in_shared_words(shm_name, mp_context):
    b = Bitset(shm_name, NBITS, create=True)
    q = mp_context.Queue()
    procs = [mp_context.Process(target=_disjoint, args=(shm_name, k, q)) for k in range(3)]
    for p in procs:
        p.start()
    assert [q.get(timeout=300) for _ in procs] == ["ok"] * 3
    for p in procs:
        p.join(60)
    # processes 0..2 own i % 4 in {0, 1, 2}; bits with i % 4 == 3 untouched
    assert b.count() == NBITS - NBITS // 4
    assert list(b.iter_set(NBITS - 8)) == [NBITS - 8, NBITS - 7, NBITS - 6,
                                           NBITS - 4, NBITS - 3, NBITS - 2]
    b.close()


# ---------------------------------------------------------------- hypothesis

SIZE = 150


class BitsetModel(RuleBasedStateMachine):
    """The bitset against a Python set of indexes."""

    @initialize()
    def setup(self):
        self.name = unique_name("hypbits")
        self.b = Bitset(self.name, SIZE, create=True)
        self.model = set()

    idx = st.integers(-SIZE, SIZE - 1)

    @rule(i=idx)
    def set_bit(self, i):
        assert self.b.set(i) == (i % SIZE in self.model)
        self.model.add(i % SIZE)

    @rule(i=idx)
    def clear_bit(self, i):
        assert self.b.clear(i) == (i % SIZE in self.model)
        self.model.discard(i % SIZE)

    @rule(i=idx)
    def flip_bit(self, i):
        assert self.b.flip(i) == (i % SIZE in self.model)
        self.model ^= {i % SIZE}

    @rule(i=idx, v=st.booleans())
    def assign(self, i, v):
        self.b[i] = v
        (self.model.add if v else self.model.discard)(i % SIZE)

    @rule(i=st.one_of(st.integers(SIZE, 10 ** 20), st.integers(-(10 ** 20), -SIZE - 1)))
    def out_of_range(self, i):
        with pytest.raises(IndexError):
            self.b.set(i)

    @rule()
    def set_all(self):
        self.b.set_all()
        self.model = set(range(SIZE))

    @rule()
    def clear_all(self):
        self.b.clear_all()
        self.model = set()

    @rule(start=st.integers(-SIZE - 5, SIZE + 5))
    def find(self, start):
        s = max(start + SIZE, 0) if start < 0 else start
        fs = min((i for i in self.model if i >= s), default=None)
        fc = min((i for i in range(s, SIZE) if i not in self.model), default=None)
        assert self.b.find_first_set(start) == fs
        assert self.b.find_first_clear(start) == fc

    @invariant()
    def agrees(self):
        if not hasattr(self, "b"):
            return
        assert self.b.count() == len(self.model)
        assert self.b.any() == bool(self.model)
        assert self.b.all() == (len(self.model) == SIZE)
        assert set(self.b.iter_set()) == self.model

    def teardown(self):
        if hasattr(self, "b"):
            assert self.b.check()["count"] == len(self.model)
            self.b.close()
            shmkit.unlink(self.name)


TestBitsetModel = BitsetModel.TestCase
TestBitsetModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("kind", ["bitset", "array", "counter"])
def test_corrupt_header_is_a_clean_error(shm_name, kind):
    """Bytes scribbled over the object's shared header (by a buggy or
    hostile process) give CorruptSegmentError, never a wild access."""
    with shmkit.Segment(shm_name, create=True) as seg:
        obj = {"bitset": lambda: seg.bitset("x", 1000), "array": lambda: seg.array("x", "int32", 100),
               "counter": lambda: seg.counter("x", cells=4)}[kind]()
        off = seg.lookup("x")["offset"]
    with open(f"/dev/shm/{shm_name}", "r+b") as f:
        f.seek(off + 16)
        saved = f.read(24)
        for junk in (b"\xff" * 24, b"\x00" * 24, bytes(range(24))):
            f.seek(off + 16)
            f.write(junk)
            f.flush()
            with pytest.raises(shmkit.CorruptSegmentError):
                obj.check()
            with shmkit.Segment(shm_name, create=False) as seg:
                with pytest.raises(shmkit.CorruptSegmentError):
                    seg.open("x")
        f.seek(off + 16)
        f.write(saved)
    obj.check()                                # repaired: fine again
    obj.close()

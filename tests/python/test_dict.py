"""Tests of shmkit.SharedDict: the Mapping API against a plain dict, value and
key encodings, errors, real processes (fork and spawn), SIGKILLed writers,
a hypothesis stateful model test, and growth to 10M entries (slow)."""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import random
import signal
import time
import uuid

import pytest

import shmkit
from conftest import busy_workers
from shmkit import SharedDict

np = pytest.importorskip("numpy")

CONTEXTS = ["fork", "spawn"]


def unique(tag: str = "d") -> str:
    return f"shmkit-test-dict-{tag}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def _unlink(name: str) -> None:
    try:
        shmkit.unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture
def name():
    n = unique()
    yield n
    _unlink(n)


@pytest.fixture
def d(name):
    sd = SharedDict(name, create=True)
    yield sd
    sd.close()


# --------------------------------------------------------------- Mapping API

def test_basic_mapping_api(d):
    assert len(d) == 0 and not d and dict(d) == {}
    d["a"] = 1
    d["b"] = "two"
    d[b"c"] = 3.0
    assert d["a"] == 1 and d["b"] == "two" and d[b"c"] == 3.0
    assert len(d) == 3 and "a" in d and "zz" not in d
    d["a"] = "uno"
    assert d["a"] == "uno" and len(d) == 3
    del d["a"]
    assert "a" not in d and len(d) == 2
    with pytest.raises(KeyError):
        d["a"]
    with pytest.raises(KeyError):
        del d["a"]
    assert d.get("a") is None and d.get("a", 5) == 5 and d.get("b") == "two"
    assert sorted(d, key=repr) == sorted(["b", b"c"], key=repr)
    assert set(d.keys()) == {"b", b"c"}
    assert sorted(map(repr, d.values())) == sorted(map(repr, ["two", 3.0]))
    assert dict(d.items()) == {"b": "two", b"c": 3.0}
    assert ("b", "two") in d.items()
    assert d == {"b": "two", b"c": 3.0} and d != {"b": 1}
    assert d.copy() == {"b": "two", b"c": 3.0} and type(d.copy()) is dict
    assert d.pop("b") == "two" and d.pop("b", 9) == 9
    with pytest.raises(KeyError):
        d.pop("b")
    assert d.setdefault("s", [1]) == [1] and d.setdefault("s", 2) == [1]
    d.update({"x": 1}, y=2)
    d.update([("z", 3)])
    assert d["x"] == 1 and d["y"] == 2 and d["z"] == 3
    k, v = d.popitem()
    assert k not in d
    d.clear()
    assert len(d) == 0 and list(d) == []
    with pytest.raises(KeyError):
        d.popitem()
    assert repr(d) == "SharedDict({})"
    assert isinstance(d, shmkit.SharedDict)
    from collections.abc import MutableMapping
    assert isinstance(d, MutableMapping)


def test_data_argument_and_reattach(name):
    with SharedDict(name, {"a": 1, "b": [2]}, create=True) as a:
        with SharedDict(name, create=False) as b:
            assert b == {"a": 1, "b": [2]}
            b["c"] = 3
        assert a["c"] == 3
    with pytest.raises(FileExistsError):
        SharedDict(name, create=True)


def test_open_in_segment(name):
    with shmkit.Segment(name, create=True) as seg:
        a = seg.dict("one")
        b = seg.dict("two")
        a["k"] = 1
        b["k"] = 2
        assert seg.dict("one")["k"] == 1 and seg.open("two")["k"] == 2
        assert {o["name"] for o in seg.objects()} >= {"one", "two"}
        a.close()
        b.close()


# ------------------------------------------------------------------- values

VALUES = [
    None, True, False, 0, 1, -1, 2**63 - 1, -2**63, 2**64, -(10**40), 0.0, -2.5,
    float("inf"), "", "héllo wörld ☃", "x" * 10000, b"", b"\x00\xff" * 500,
    [1, 2, 3], {"nested": (1, 2)}, (1, "a"), {1, 2}, bytearray(b"ab"), 3 + 4j,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_value_roundtrip(d, value):
    d["k"] = value
    got = d["k"]
    assert got == value and type(got) is type(value)


def test_nan_roundtrip(d):
    d["n"] = float("nan")
    assert d["n"] != d["n"]


@pytest.mark.parametrize("arr", [
    np.arange(12, dtype=np.float64).reshape(3, 4),
    np.arange(10, dtype=np.int8),
    np.zeros((0, 3), dtype=np.float32),
    np.array(5.0),
    np.array([b"ab", b"c"]),
    np.array(["uni", "codé"]),
    np.arange(20, dtype=np.uint16)[::2],           # not contiguous
    np.asfortranarray(np.arange(6).reshape(2, 3)),
    np.array([1 + 2j]),
    np.array(["2020-01-01"], dtype="datetime64[D]"),
    np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array([object(), 1], dtype=object)[1:],
], ids=lambda a: f"{a.dtype}-{a.shape}")
def test_numpy_roundtrip(d, arr):
    d["a"] = arr
    got = d["a"]
    assert isinstance(got, np.ndarray) and got.dtype == arr.dtype and got.shape == arr.shape
    assert (got == arr).all() if arr.dtype != object else list(got) == list(arr)
    got[...] = got  # a copy, writable


def test_get_view_zero_copy_and_survives_overwrite(d):
    arr = np.arange(1000, dtype=np.float64).reshape(10, 100)
    d["a"] = arr
    v = d.get_view("a")
    assert not v.flags.writeable and (v == arr).all()
    with pytest.raises(ValueError):
        v[0, 0] = 1
    v2 = d.get_view("a")
    assert v2.__array_interface__["data"][0] == v.__array_interface__["data"][0]
    d["a"] = np.zeros(3)
    del d["a"]
    for i in range(2000):  # churn the heap; the pinned block is not reused
        d[f"x{i}"] = np.full(1000, 7.0)
    assert (v == arr).all() and (v2 == arr).all()
    del v, v2
    mv = (d.__setitem__("b", b"bytes!"), d.get_view("b"))[1]
    assert bytes(mv) == b"bytes!" and mv.readonly
    d["i"] = 5
    with pytest.raises(TypeError):
        d.get_view("i")
    with pytest.raises(KeyError):
        d.get_view("missing")


def test_view_outlives_handle(name):
    sd = SharedDict(name, create=True)
    sd["a"] = np.arange(5)
    v = sd.get_view("a")
    sd.close()
    assert list(v) == [0, 1, 2, 3, 4]


def test_big_value(name):
    with SharedDict(name, create=True) as sd:
        big = np.random.default_rng(1).integers(0, 255, size=50 << 20, dtype=np.uint8)
        sd["big"] = big
        assert (sd.get_view("big") == big).all()
        sd["b"] = bytes(20 << 20)
        assert len(sd["b"]) == 20 << 20


# --------------------------------------------------------------------- keys

def test_key_types(d):
    keys = ["s", b"s", 1, -1, 2**70, -(2**70), 0, (1, "a", b"b"), (), ((1, 2), "x"), "", b""]
    for i, k in enumerate(keys):
        d[k] = i
    assert len(d) == len(keys)
    for i, k in enumerate(keys):
        assert d[k] == i
    assert sorted(map(repr, d)) == sorted(map(repr, keys))
    d[True] = "t"        # True == 1, as in dict
    assert d[1] == "t" and len(d) == len(keys)


@pytest.mark.parametrize("key", [1.5, [1], {1: 2}, None, object(), (1, [2]), frozenset()])
def test_bad_key_type(d, key):
    d["x"] = 1
    with pytest.raises(TypeError):
        d[key] = 1
    with pytest.raises(TypeError):
        d[key]
    with pytest.raises(TypeError):
        del d[key]
    assert key not in d
    assert dict(d) == {"x": 1}


# ------------------------------------------------------------------- errors

def test_closed_handle_raises_value_error(name):
    sd = SharedDict(name, create=True)
    sd["a"] = 1
    sd.close()
    assert sd.closed
    for op in [lambda: sd["a"], lambda: sd.__setitem__("a", 1), lambda: len(sd),
               lambda: "a" in sd, lambda: sd.get("a"), lambda: list(sd),
               lambda: sd.incr("a"), lambda: sd.pop("a"), lambda: sd.stats(),
               lambda: sd.get_view("a"), lambda: sd.clear(), lambda: pickle.dumps(sd)]:
        with pytest.raises(ValueError):
            op()
    sd.close()  # idempotent


def test_out_of_memory_leaves_dict_unchanged(name):
    with SharedDict(name, create=True, max_size=4 << 20) as sd:
        sd["k"] = "small"
        with pytest.raises(shmkit.OutOfMemoryError):
            sd["k"] = b"x" * (8 << 20)
        with pytest.raises(MemoryError):
            sd["new"] = b"x" * (8 << 20)
        assert sd == {"k": "small"}
        sd.check()


def test_allow_pickle_false(name):
    with SharedDict(name, create=True, allow_pickle=False) as sd:
        sd["ok"] = (np.arange(3), "s")[1]
        sd["arr"] = np.arange(3)
        with pytest.raises(TypeError):
            sd["bad"] = [1, 2]
        with pytest.raises(TypeError):
            sd["ok"] = {"a": 1}
        assert sd["ok"] == "s" and "bad" not in sd and len(sd) == 2


def test_corrupt_segment(name):
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(os.urandom(100000))
    with pytest.raises(shmkit.CorruptSegmentError):
        SharedDict(name, create=False)


def test_corrupt_dict_header(name):
    with SharedDict(name, create=True) as sd:
        sd["a"] = 1
    with shmkit.Segment(name, create=False) as seg:
        off = seg.lookup("dict")["offset"]
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    try:
        good = os.pread(fd, 8, off)
        os.pwrite(fd, b"NOTADICT", off)
        with pytest.raises(shmkit.CorruptSegmentError):
            SharedDict(name, create=False)
        os.pwrite(fd, good, off)
    finally:
        os.close(fd)
    with SharedDict(name, create=False) as sd:
        assert sd["a"] == 1


def test_wrong_object_type(name):
    with shmkit.Segment(name, create=True) as seg:
        seg.allocator("heap", capacity=4096)
        with pytest.raises(TypeError):
            seg.dict("heap")


def test_missing_dict_in_segment(name):
    with shmkit.Segment(name, create=True) as seg:
        with pytest.raises(FileNotFoundError, match="no SharedDict named 'nope'"):
            seg.dict("nope", create=False)


# ---------------------------------------------------- atomic helpers, stats

def test_incr_and_cas(d):
    assert d.incr("c") == 1 and d.incr("c", 10) == 11 and d.incr("c", -1) == 10
    assert d.incr("f", 0.5) == 0.5
    d["c"] = 2**63 - 1
    assert d.incr("c") == 2**63
    d["s"] = "x"
    with pytest.raises(TypeError):
        d.incr("s")
    with pytest.raises(TypeError):
        d.incr("c", "1")
    assert d.compare_and_swap("s", "x", "y") and d["s"] == "y"
    assert not d.compare_and_swap("s", "x", "z") and d["s"] == "y"
    assert not d.compare_and_swap("missing", None, 1) and "missing" not in d


def test_stats_check_and_sizing(d):
    for i in range(1000):
        d[f"k{i}"] = i
    st = d.stats()
    assert st["entries"] == 1000 and st["capacity"] >= 1334
    assert 0 < st["load_factor"] <= 0.75 and st["heap_used"] > 0
    full = d.check()
    assert full["entries"] == 1000 and full["key_bytes"] > 0
    est = SharedDict.estimate_size(1000, 5, 8)
    assert est > full["entry_bytes"] + full["table_bytes"]
    assert SharedDict.estimate_size(10**7, 16, 16) > 10**7 * 64


def test_pickle_handle(d):
    d["a"] = 1
    d2 = pickle.loads(pickle.dumps(d))
    assert d2 is not d and d2["a"] == 1
    d2["b"] = 2
    assert d["b"] == 2
    d2.close()


# ---------------------------------------------------------------- processes

def _pool_worker(args):
    sd, i = args
    sd[f"w{i}"] = i * i
    return sd.incr("total", i)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_pool_workers_attach_by_pickle(d, ctx):
    with mp.get_context(ctx).Pool(2) as pool:
        pool.map(_pool_worker, [(d, i) for i in range(10)])
    assert d["total"] == sum(range(10))
    assert all(d[f"w{i}"] == i * i for i in range(10))


def _mixed_worker(name, p, n_ops, shared_keys):
    rng = random.Random(p)
    sd = SharedDict(name, create=False)
    mine = {}
    last_shared = {}
    for i in range(n_ops):
        r = rng.random()
        if r < 0.35:
            k = f"p{p}-{rng.randrange(200)}"
            v = (p, i) if rng.random() < 0.5 else f"{p}:{i}"
            sd[k] = v
            mine[k] = v
        elif r < 0.45:
            k = f"p{p}-{rng.randrange(200)}"
            if sd.pop(k, None) is not None:
                del mine[k]
        elif r < 0.65:
            k = f"shared-{rng.randrange(shared_keys)}"
            sd[k] = (p, i)
            last_shared[k] = (p, i)
        elif r < 0.85:
            sd.incr(f"ctr-{rng.randrange(4)}")
        else:
            k = f"p{p}-{rng.randrange(200)}"
            assert sd.get(k) == mine.get(k)
    sd.close()
    return mine, last_shared


def _mixed_entry(q, *args):
    # a worker's exception reaches the test at once, not after q.get's timeout
    try:
        q.put(("ok", _mixed_worker(*args)))
    except BaseException:
        import traceback
        q.put(("error", traceback.format_exc()))


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_four_processes_mixed_ops(d, name, ctx):
    c = mp.get_context(ctx)
    P, N, S = 4, 20000, 50
    q = c.Queue()
    procs = [c.Process(target=_mixed_entry, args=(q, name, p, N, S)) for p in range(P)]
    for pr in procs:
        pr.start()
    answers = [q.get(timeout=600) for _ in procs]
    errors = [text for kind, text in answers if kind == "error"]
    assert not errors, errors[0]
    results = [res for _, res in answers]
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    expected = {}
    last_by_key = {}
    for mine, last_shared in results:
        expected.update(mine)
        for k, v in last_shared.items():
            last_by_key.setdefault(k, set()).add(v)
    got = d.copy()
    incrs = sum(v for k, v in got.items() if isinstance(k, str) and k.startswith("ctr-"))
    # every ctr increment counted exactly once
    rngs = [random.Random(p) for p in range(P)]
    want_incrs = 0
    for rng in rngs:
        for _ in range(N):
            r = rng.random()
            if r < 0.35:
                rng.randrange(200)
                rng.random()
            elif r < 0.45:
                rng.randrange(200)
            elif r < 0.65:
                rng.randrange(S)
            elif r < 0.85:
                rng.randrange(4)
                want_incrs += 1
            else:
                rng.randrange(200)
    assert incrs == want_incrs
    for k, v in expected.items():
        assert got[k] == v
    own = {k for k in got if isinstance(k, str) and k.startswith("p")}
    assert own == set(expected)
    for k, finals in last_by_key.items():
        assert got[k] in finals
    d.check()


def _incr_worker(name, n):
    sd = SharedDict(name, create=False)
    for _ in range(n):
        sd.incr("n")
    sd.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_incr_from_four_processes_sums_exactly(d, name, ctx):
    c = mp.get_context(ctx)
    procs = [c.Process(target=_incr_worker, args=(name, 5000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert d["n"] == 20000


def _reader_worker(name, stop_after, bad):
    sd = SharedDict(name, create=False)
    deadline = time.monotonic() + stop_after
    n = 0
    while time.monotonic() < deadline:
        for i in range(20):
            v = sd.get(f"k{i}")
            if v is None:
                continue
            key, j, payload = v
            if key != f"k{i}" or payload != str(j) * (j % 50):
                bad.value += 1
            n += 1
    sd.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_readers_never_see_torn_values(d, name, ctx):
    c = mp.get_context(ctx)
    bad = c.Value("i", 0)
    r = c.Process(target=_reader_worker, args=(name, 2.0, bad))
    r.start()
    j = 0
    while r.is_alive():
        j += 1
        i = j % 20
        d[f"k{i}"] = (f"k{i}", j, str(j) * (j % 50))
        if j % 7 == 0:
            d.pop(f"k{(j * 3) % 20}", None)
        if j % 5000 == 0:
            d.clear()
    r.join()
    assert r.exitcode == 0 and bad.value == 0


def _replace_tables(name, stop, wid):
    # Every clear() gives each shard a new table and frees the old one, and
    # the inserts in between resize them again.
    sd = SharedDict(name, create=False)
    j = 0
    while not stop.is_set():
        sd[f"k{j}"] = j
        j += 1
        if j % 300 == 0:
            sd.clear()
    sd.close()


def test_open_while_another_process_replaces_tables(d, name):
    # Opening checks every shard's table; a table freed by a resize or a
    # clear between reading the shard's table word and checking the table
    # must send the check back to the new word, not fail a healthy dict.
    with busy_workers(_replace_tables, name, n=1):
        for _ in range(3000):
            SharedDict(name, create=False).close()


# ---------------------------------------------------------------- SIGKILL

def _killed_writer(name, rnd, ready):
    sd = SharedDict(name, create=False)
    ready.set()
    i = 0
    while True:
        sd[(rnd, i)] = i * 7
        if i % 3 == 0:
            sd[f"over{i % 10}"] = "x" * (i % 300)
        if i % 5 == 0:
            sd.pop(f"over{(i + 5) % 10}", None)
        sd.incr(f"count{rnd}")
        i += 1


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_sigkill_writer_at_random_instants(d, name, ctx):
    c = mp.get_context(ctx)
    rng = random.Random(7)
    rounds = 30 if ctx == "fork" else 6
    for rnd in range(rounds):
        ready = c.Event()
        p = c.Process(target=_killed_writer, args=(name, rnd, ready))
        p.start()
        assert ready.wait(60)
        time.sleep(rng.uniform(0.001, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        # the next writer repairs; nothing deadlocks, nothing is torn
        d["after"] = rnd
        d.check()
        keys = sorted(k[1] for k in d if isinstance(k, tuple) and k[0] == rnd)
        # writes were sequential: what committed is a prefix
        assert keys == list(range(len(keys)))
        assert all(d[(rnd, i)] == i * 7 for i in keys)
        cnt = d.get(f"count{rnd}", 0)
        assert cnt in (len(keys), len(keys) - 1)
        for i in range(10):
            v = d.get(f"over{i}")
            assert v is None or v == "x" * len(v)
    st = d.check()
    assert st["entries"] == len(d)


# -------------------------------------------------------- hypothesis model

try:
    from hypothesis import settings, strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

    keys_st = st.one_of(st.text(max_size=8), st.binary(max_size=8),
                        st.integers(min_value=-2**70, max_value=2**70),
                        st.tuples(st.integers(-5, 5), st.text(max_size=3)))
    values_st = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                          st.text(max_size=30), st.binary(max_size=30),
                          st.lists(st.integers(), max_size=3))

    class DictModel(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.name = unique("hyp")
            self.sd = SharedDict(self.name, create=True)
            self.model = {}

        def teardown(self):
            self.sd.close()
            _unlink(self.name)

        @rule(k=keys_st, v=values_st)
        def set(self, k, v):
            self.sd[k] = v
            self.model[k] = v

        @rule(k=keys_st)
        def delete(self, k):
            if k in self.model:
                del self.sd[k]
                del self.model[k]
            else:
                with pytest.raises(KeyError):
                    del self.sd[k]

        @rule(k=keys_st)
        def get(self, k):
            assert self.sd.get(k, "MISSING") == self.model.get(k, "MISSING")

        @rule(k=keys_st, v=values_st)
        def setdefault(self, k, v):
            assert self.sd.setdefault(k, v) == self.model.setdefault(k, v)

        @rule(k=keys_st)
        def pop(self, k):
            assert self.sd.pop(k, "MISSING") == self.model.pop(k, "MISSING")

        @rule(k=keys_st, d=st.integers(-10, 10))
        def incr(self, k, d):
            cur = self.model.get(k, 0)
            if isinstance(cur, (int, float)) and not isinstance(cur, bool):
                self.model[k] = cur + d
                assert self.sd.incr(k, d) == self.model[k]

        @rule()
        def popitem(self):
            if self.model:
                k, v = self.sd.popitem()
                assert self.model.pop(k) == v

        @rule()
        def clear(self):
            if len(self.model) > 30:
                self.sd.clear()
                self.model.clear()

        @invariant()
        def same(self):
            assert len(self.sd) == len(self.model)
            assert self.sd.copy() == self.model

    DictModel.TestCase.settings = settings(max_examples=60, stateful_step_count=60,
                                           deadline=None)
    test_hypothesis_model = DictModel.TestCase
except ImportError:  # pragma: no cover
    pass


# ------------------------------------------------------------------ growth

@pytest.mark.slow
def test_growth_to_ten_million(name):
    n = 10_000_000
    with SharedDict(name, create=True) as sd:
        for i in range(n):
            sd[i] = i
        assert len(sd) == n
        for i in range(0, n, 9973):
            assert sd[i] == i
        st = sd.stats()
        assert st["entries"] == n and st["load_factor"] <= 0.75
        # another process sees all of it
        c = mp.get_context("fork")
        p = c.Process(target=_check_growth_child, args=(name, n))
        p.start()
        p.join(600)
        assert p.exitcode == 0


def _check_growth_child(name, n):
    sd = SharedDict(name, create=False)
    assert len(sd) == n
    for i in range(0, n, 997):
        assert sd[i] == i
    sd[n] = n
    sd.close()


# ------------------------------------------------- Python code mid-operation

class _ClosesOnEq:
    def __init__(self, sd):
        self.sd = sd

    def __eq__(self, other):
        self.sd.close()
        return True


class _ClosesOnPickle:
    def __init__(self, sd):
        self.sd = sd

    def __reduce__(self):
        self.sd.close()
        return (int, (1,))


def test_close_from_python_code_inside_an_operation(name):
    sd = SharedDict(name, create=True)
    sd["k"] = 1
    with pytest.raises(ValueError):
        sd.compare_and_swap("k", _ClosesOnEq(sd), 2)
    assert sd.closed
    sd = SharedDict(name, create=False)
    with pytest.raises(ValueError):
        sd["j"] = _ClosesOnPickle(sd)
    sd = SharedDict(name, create=False)
    assert dict(sd) == {"k": 1}
    sd.close()


def test_popitem_drains_everything_once(d):
    model = {f"k{i}": i for i in range(5000)}
    d.update(model)
    seen = {}
    while d:
        k, v = d.popitem()
        assert k not in seen
        seen[k] = v
    assert seen == model and len(d) == 0
    with pytest.raises(KeyError):
        d.popitem()
    d["again"] = 1
    assert d.popitem() == ("again", 1)


@pytest.mark.slow
def test_one_gigabyte_value(name):
    with SharedDict(name, create=True) as sd:
        big = np.ones(1 << 30, dtype=np.uint8)
        sd["big"] = big
        v = sd.get_view("big")
        assert v.nbytes == 1 << 30 and v[0] == 1 and v[-1] == 1
        del v
        sd["small"] = 1
        del sd["big"]
        assert dict(sd) == {"small": 1}
        sd.check()


def _drop_view_in_child(holder):
    holder.clear()      # the inherited copy of the view goes away here
    import gc
    gc.collect()


def test_forked_child_dropping_a_view_does_not_unpin(d):
    d["a"] = np.arange(1000, dtype=np.int64)
    holder = [d.get_view("a")]
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_drop_view_in_child, args=(holder,))
    p.start()
    p.join()
    assert p.exitcode == 0
    del d["a"]                       # retired, still pinned by our view
    for i in range(500):             # churn: the block must not be reused
        d[f"x{i}"] = np.full(1000, -1, dtype=np.int64)
    assert (holder[0] == np.arange(1000)).all()


def test_estimate_size_is_enough(shm_name):
    """A segment capped at estimate_size(n) holds n such entries."""
    n = 20_000
    est = SharedDict.estimate_size(n, 16, 16)
    with shmkit.Segment(shm_name, size=est, max_size=est, create=True) as seg:
        d = seg.dict("d")
        for i in range(n):
            d[f"k{i:015d}"] = b"v" * 16
        assert len(d) == n
        d.check()
        d.close()

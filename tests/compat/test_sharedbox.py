"""shmkit.compat.sharedbox against the sharedbox 0.2 API reference
(/work/shared/seeds/003_*: Constructor, Dictionary Operations, Memory
Management, Data Types, Statistics, Thread Safety, Error Handling, Best
Practices, Multi-Process Usage)."""
import sys
import threading
import types

import numpy as np
import pytest

import shmkit
from shmkit.compat.sharedbox import SharedDict

# ---- the README's examples, run as scripts ----


def test_example_constructor(run_example):
    out = run_example("sharedbox_constructor.py", ["my_dict", "initialized_dict"])
    assert out == "False [('key1', 'value1'), ('key2', [1, 2, 3])]\n"


def test_example_dictionary_operations(run_example):
    out = run_example("sharedbox_dictionary_operations.py", ["ops_dict"])
    lines = out.splitlines()
    assert sorted(lines[:2]) == ["a", "b"]
    assert lines[2:] == ["{'v': 1} 0 ['a', 'b'] [('a', 1), ('b', 2)] [1, 2]", "True"]


def test_example_numpy(run_example):
    assert run_example("sharedbox_numpy.py", ["np_dict"]) == "ndarray [[1, 2], [3, 4]] (1000,)\n"


def test_example_statistics(run_example):
    out = run_example("sharedbox_statistics.py", ["stats_dict"])
    assert out == ("['avg_key_utf8_bytes', 'avg_value_pickle_bytes', 'estimated_data_bytes', "
                   "'sample_size', 'segment_name', 'total_entries'] ['current_stats', "
                   "'lock_recommendation', 'sizing_recommendation', 'target_entries'] 100 True\n")


def test_example_best_practices(run_example):
    out = run_example("sharedbox_best_practices.py", ["data"])
    assert out.splitlines() == ["default [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]",
                                "removed"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_example_multi_process(run_example, method):
    out = run_example("sharedbox_multi_process_mp.py", ["sensor_data"], method)
    assert out == "float ndarray (1000,) {'sensor_id': 'temp_01', 'location': 'room_a'}\n"


# ---- Constructor ----


def test_constructor(shm_name):
    with pytest.raises(RuntimeError) as info:          # what sharedbox raises
        SharedDict(shm_name, create=False)
    assert isinstance(info.value, FileNotFoundError)    # and what shmkit raises
    d = SharedDict(shm_name, {"a": 1}, size=1 << 20, max_keys=2)
    for i in range(50):                                # max_keys and size are not limits
        d[f"k{i}"] = "x" * 100_000
    assert len(d) == 51
    assert SharedDict(shm_name, create=False)["a"] == 1
    assert SharedDict(shm_name)["a"] == 1               # create=True opens an existing one
    d.close()
    d.unlink()
    for kw in ({"size": 0}, {"max_keys": -1}):
        with pytest.raises(ValueError):
            SharedDict(shm_name, **kw)


# ---- Dictionary operations and errors ----


@pytest.fixture
def sd(shm_name):
    d = SharedDict(shm_name)
    yield d
    d.close()
    d.unlink()


def test_basic_access(sd):
    sd["k"] = [1, 2]
    assert sd["k"] == [1, 2] and sd.get("k") == [1, 2] and sd.get("no", 0) == 0
    assert "k" in sd and len(sd) == 1
    del sd["k"]
    with pytest.raises(KeyError):
        sd["k"]
    with pytest.raises(KeyError):
        del sd["k"]


def test_iteration(sd):
    sd.update({"a": 1, "b": 2})
    assert sorted(sd) == ["a", "b"]
    for method in ("keys", "keys_atomic"):
        got = getattr(sd, method)()
        assert isinstance(got, list) and sorted(got) == ["a", "b"]
    assert sorted(sd.items()) == [("a", 1), ("b", 2)] and sorted(sd.values()) == [1, 2]


@pytest.mark.parametrize("key", [1, b"bytes", ("t",), None, 1.5])
def test_non_str_keys_are_type_errors(sd, key):
    sd["ok"] = 1
    for op in (lambda: sd.__setitem__(key, 1), lambda: sd[key], lambda: sd.get(key),
               lambda: sd.__delitem__(key), lambda: key in sd):
        with pytest.raises(TypeError):
            op()
    assert dict(sd.items()) == {"ok": 1}


def test_unpicklable_value_is_a_value_error(sd):
    sd["k"] = 1
    with pytest.raises(ValueError):
        sd["k"] = threading.Lock()
    with pytest.raises(ValueError):
        sd["k"] = lambda: 0
    assert sd["k"] == 1


def test_undecodable_value_is_a_value_error(sd):
    mod = types.ModuleType("shmkit_compat_gone")
    exec("class Gone:\n    pass", mod.__dict__)
    mod.Gone.__module__ = mod.__name__
    sys.modules[mod.__name__] = mod
    try:
        sd["g"] = mod.Gone()
    finally:
        del sys.modules[mod.__name__]
    with pytest.raises(ValueError):
        sd["g"]
    with pytest.raises(ValueError):
        sd.get("g")


def test_numpy_arrays_without_pickle(sd):
    sd["m"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    # a native handle that never unpickles reads it: it is not a pickle
    raw = shmkit.SharedDict(sd.segment_name, create=False, allow_pickle=False)
    got = raw["m"]
    raw.close()
    assert got.dtype == np.float32 and got.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.array_equal(sd["m"], got)


# ---- Memory management ----


def test_close_is_closed_unlink(shm_name):
    d = SharedDict(shm_name)
    d["k"] = 1
    assert d.is_closed() is False
    with pytest.raises(RuntimeError):
        d.unlink()                                     # not closed yet: nothing removed
    assert SharedDict(shm_name, create=False)["k"] == 1
    d.close()
    assert d.is_closed() is True
    d.unlink()
    d.unlink()                                         # already gone: nothing to do
    with pytest.raises(FileNotFoundError):
        SharedDict(shm_name, create=False)


# ---- Statistics ----


def test_get_stats(sd):
    st = sd.get_stats()
    assert st["total_entries"] == 0 and st["avg_key_utf8_bytes"] == 0
    for i in range(10):
        sd[f"key-{i:04d}"] = "v" * 50
    st = sd.get_stats()
    assert st == {"total_entries": 10, "sample_size": 10, "avg_key_utf8_bytes": 8.0,
                  "avg_value_pickle_bytes": 50.0, "estimated_data_bytes": 580,
                  "segment_name": sd.segment_name}


def test_recommend_sizing(sd):
    for i in range(10):
        sd[f"key-{i:04d}"] = "v" * 500
    small, big = sd.recommend_sizing(1000), sd.recommend_sizing(100_000)
    assert small["target_entries"] == 1000 and small["current_stats"] == sd.get_stats()
    assert 1000 * 508 < small["sizing_recommendation"]["total_segment_size"] \
        < big["sizing_recommendation"]["total_segment_size"]
    assert big["lock_recommendation"]["recommended_lock_count"] == shmkit._shmkit.DICT_SHARDS
    rec = big["sizing_recommendation"]    # the README's key and sharedbox 0.2.4's
    assert rec["total_segment_size"] == rec["recommended_size_bytes"] \
        <= rec["recommended_size_pow2_bytes"] < 2 * rec["recommended_size_bytes"]
    assert rec["data_bytes"] == 100_000 * 508


# ---- Thread safety: keys_atomic is a consistent snapshot ----


def _move_token(name, stop, _w):
    """Keep exactly one or two token keys alive: add the next, then delete
    the previous; there is never an instant with none."""
    d = shmkit.SharedDict(name, create=False)
    i = 0
    while not stop.is_set():
        d[f"token-{i + 1}"] = 1
        del d[f"token-{i}"]
        i += 1


def test_keys_atomic_is_a_consistent_snapshot(shm_name):
    from .conftest import _python_conftest

    d = SharedDict(shm_name)
    for i in range(2000):                              # spread over every shard
        d[f"filler-{i}"] = i
    d["token-0"] = 1
    try:
        with _python_conftest.busy_workers(_move_token, shm_name, n=1):
            for _ in range(300):
                tokens = [k for k in d.keys_atomic() if k.startswith("token-")]
                assert 1 <= len(tokens) <= 2, tokens
    finally:
        d.close()
        d.unlink()

"""shmkit.compat.shared_hashmap against the shared-hashmap README
(/work/shared/seeds/000_*: Quick Start, Producer-Consumer, API Reference,
Serialization, Thread Safety)."""
import pickle

import pytest

from shmkit.compat.shared_hashmap import SharedHashMap

from .conftest import run_processes

# ---- the README's examples, run as scripts ----


def test_example_quick_start(run_example):
    out = run_example("shared_hashmap_quick_start.py", ["my_hashmap"])
    assert out.splitlines() == ["value1", "42", "key1 exists!", "Hashmap size: 1"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_example_producer_consumer(run_example, method):
    out = run_example("shared_hashmap_producer_consumer_mp.py", ["producer_consumer_example"],
                      method)
    lines = out.splitlines()
    # the consumer runs alongside the producer: each item is either not
    # there yet (None) or the producer's value, never anything else
    assert len(lines) == 10
    assert set(lines) <= {"Consumed: None", "Consumed: data from producer 0"}


# ---- API reference ----


def test_constructor_defaults_and_attach(shm_name):
    with SharedHashMap(shm_name) as m:                  # capacity=1024, create=True
        m["k"] = "v"
        with SharedHashMap(name=shm_name, create=False) as other:
            assert other["k"] == "v"
        m.unlink()


def test_create_true_on_existing_and_false_on_missing(shm_name):
    with pytest.raises(FileNotFoundError):
        SharedHashMap(shm_name, create=False)
    with SharedHashMap(shm_name, capacity=16, max_key_size=8, max_value_size=8, create=True):
        with pytest.raises(FileExistsError):
            SharedHashMap(shm_name, create=True)


@pytest.mark.parametrize("arg", ["capacity", "max_key_size", "max_value_size"])
def test_bad_sizes(shm_name, arg):
    with pytest.raises(ValueError):
        SharedHashMap(shm_name, **{arg: 0})
    with pytest.raises(TypeError):
        SharedHashMap(shm_name, **{arg: "10"})


def test_limits_are_not_enforced(shm_name):
    """capacity and the maximum sizes are accepted, not limits (documented)."""
    with SharedHashMap(shm_name, capacity=4, max_key_size=8, max_value_size=8) as m:
        for i in range(100):
            m.set("k" * 50 + str(i), "v" * 5000)
        assert m.size() == 100
        m.unlink()


def test_methods(shm_name):
    with SharedHashMap(shm_name) as m:
        assert m.set("a", 1) is None
        assert m.get("a") == 1
        assert m.get("missing") is None
        assert m.get("missing", "dflt") == "dflt"
        assert m.size() == 1
        assert m.delete("a") is True
        assert m.delete("a") is False
        assert m.size() == 0
        m.unlink()
        assert m.closed is False
    assert m.closed is True


def test_dict_like_operations(shm_name):
    with SharedHashMap(shm_name) as m:
        m["key"] = "value"
        assert m["key"] == "value"
        assert "key" in m and "other" not in m
        del m["key"]
        with pytest.raises(KeyError):
            m["key"]
        with pytest.raises(KeyError):
            del m["key"]
        m.unlink()


def test_close_keeps_the_map(shm_name):
    m = SharedHashMap(shm_name)
    m["x"] = b"y"
    m.close()
    with SharedHashMap(shm_name, create=False) as again:
        assert again["x"] == b"y"
        again.unlink()
    with pytest.raises(FileNotFoundError):
        SharedHashMap(shm_name, create=False)


class Custom:
    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, Custom) and other.v == self.v


@pytest.mark.parametrize("value", ["text", "ünï", b"\x00bytes", 7, -2**70, None,
                                   [1, 2], {"a": (1, 2)}, Custom(3), 2.5, True])
def test_serialization_table(shm_name, value):
    """str, bytes, int and None without pickle; anything else pickled."""
    with SharedHashMap(shm_name) as m:
        m["v"] = value
        assert m["v"] == value and type(m["v"]) is type(value)
        m.unlink()


def test_unpicklable_value_is_an_error_and_changes_nothing(shm_name):
    import threading

    with SharedHashMap(shm_name) as m:
        m["k"] = 1
        with pytest.raises((TypeError, pickle.PicklingError)):
            m["k"] = threading.Lock()
        assert m["k"] == 1
        m.unlink()


def _writer(name, w, n):
    m = SharedHashMap(name, create=False)
    for i in range(n):
        m[f"w{w}-{i}"] = i
        m.set(f"shared-{i % 50}", w)
    m.close()


def test_concurrent_writers_lose_no_update(shm_name, mp_context):
    """The original's known fault (lost inserts under concurrent writers)
    is not copied: 4 processes x 500 distinct keys are all there."""
    n = 500
    with SharedHashMap(shm_name, capacity=64) as m:
        run_processes(mp_context, _writer, [(shm_name, w, n) for w in range(4)])
        assert m.size() == 4 * n + 50
        for w in range(4):
            assert all(m[f"w{w}-{i}"] == i for i in range(n))
        assert {m[f"shared-{i}"] for i in range(50)} <= {0, 1, 2, 3}
        m.unlink()

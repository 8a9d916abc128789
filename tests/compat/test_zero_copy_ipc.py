"""shmkit.compat.zero_copy_ipc against the zero-copy-ipc README
(/work/shared/seeds/002_*: Quick Start, Supported Data Types, Capacity
Planning, API Reference, Monitoring & Statistics, FAQ, Get Started)."""
import pytest

import shmkit
from shmkit.compat.zero_copy_ipc import ZeroCopyDict

from .conftest import run_processes

# ---- the README's examples, run as scripts ----


def test_example_basic_usage(run_example):
    assert run_example("zero_copy_ipc_basic_usage.py", ["my_dict"]) == "Alice\n"


def test_example_multi_process_sharing_as_written(run_example):
    out = run_example("zero_copy_ipc_multi_process_sharing.py", ["shared_dict"])
    assert out.splitlines() == ["0", "100 100"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_example_multi_process_sharing_in_processes(run_example, method):
    out = run_example("zero_copy_ipc_multi_process_sharing_mp.py", ["shared_dict"], method)
    assert sorted(out.splitlines()) == ["0", "process 1 sees 100", "process 2 sees 100"]


def test_example_context_manager(run_example):
    assert run_example("zero_copy_ipc_context_manager.py", ["temp_dict"]) == "cleaned up\n"


def test_example_supported_data_types(run_example):
    out = run_example("zero_copy_ipc_data_types.py", ["types_dict"])
    assert out == ("[('bool', True), ('bytes', b'data'), ('dict', {'nested': 'value'}), "
                   "('float', 3.14), ('int', 42), ('list', [1, 2, 3]), ('str', 'hello'), "
                   "('tuple', (1, 2, 3))] {1, 2, 3} 10 20\n")


def test_example_capacity_planning(run_example):
    assert run_example("zero_copy_ipc_capacity_planning.py", ["my_dict"]) == "1000\n"


def test_example_monitoring(run_example):
    out = run_example("zero_copy_ipc_monitoring.py", ["monitored"])
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert list(lines) == ["Used slots", "Load factor", "Heap used", "Free blocks", "Free space"]
    assert int(lines["Used slots"]) >= 50
    assert int(lines["Free blocks"]) > 0 and int(lines["Free space"].split()[0]) > 0


def test_example_faq(run_example):
    assert run_example("zero_copy_ipc_faq.py", ["faq_dict"]) == "['k1', 'k2', 'k3', 'key']\n"


def test_example_get_started(run_example):
    assert run_example("zero_copy_ipc_get_started.py", []) == "✅ Installation successful\n"


# ---- API reference ----


def test_create_and_attach(shm_name):
    with pytest.raises(FileNotFoundError):
        ZeroCopyDict.attach(shm_name)
    d = ZeroCopyDict.create(shm_name, max_items=10, heap_size=1024)
    try:
        with pytest.raises(FileExistsError):
            ZeroCopyDict.create(shm_name)
        a = ZeroCopyDict.attach(shm_name)
        d["k"] = "v"
        assert a["k"] == "v" and isinstance(a, shmkit.SharedDict)
        a.close()                                      # not the creator: the name stays
        assert ZeroCopyDict.attach(shm_name)["k"] == "v"
    finally:
        d.close()                                      # the creator: the name goes
    with pytest.raises(FileNotFoundError):
        ZeroCopyDict.attach(shm_name)


@pytest.mark.parametrize("kw", [{"max_items": 0}, {"heap_size": -1}, {"max_items": 1.5}])
def test_create_bad_sizes(shm_name, kw):
    with pytest.raises((ValueError, TypeError)):
        ZeroCopyDict.create(shm_name, **kw)
    with pytest.raises(FileNotFoundError):
        ZeroCopyDict.attach(shm_name)


def test_limits_are_not_enforced(shm_name):
    with ZeroCopyDict.create(shm_name, max_items=2, heap_size=64) as d:
        for i in range(200):
            d[i] = "x" * 1000
        assert len(d) == 200


def test_operations(shm_name):
    with ZeroCopyDict.create(shm_name) as d:
        d["a"] = 1
        d.update({"b": [2], "c": None})
        assert d["a"] == 1 and "b" in d and "zz" not in d and len(d) == 3
        assert d.get("zz") is None and d.get("zz", 5) == 5
        assert sorted(d.keys()) == ["a", "b", "c"] and isinstance(d.keys(), list)
        assert sorted(d.values(), key=repr) == sorted([1, [2], None], key=repr)
        assert sorted(d.items()) == sorted([("a", 1), ("b", [2]), ("c", None)], key=repr)
        del d["a"]
        with pytest.raises(KeyError):
            d["a"]
        with pytest.raises(KeyError):
            del d["a"]


def test_stats_and_gc_stats(shm_name):
    with ZeroCopyDict.create(shm_name) as d:
        for i in range(64):
            d[f"k{i}"] = "v" * 300
        st = d.stats()
        assert st["used_slots"] == 64 and 0 < st["load_factor"] <= 1 and st["heap_used"] > 64 * 300
        assert st["name"] == shm_name and st["is_owner"] is True and st["slot_count"] >= 64
        assert ZeroCopyDict.attach(shm_name).stats()["is_owner"] is False
        before = d.gc_stats()
        for i in range(0, 64, 2):
            del d[f"k{i}"]
        after = d.gc_stats()
        assert set(after) == {"total_free_blocks", "total_free_space", "free_blocks",
                              "free_size", "heap_used", "heap_size", "fragmentation"}
        assert after["free_size"] == after["total_free_space"] and 0 < after["fragmentation"] <= 1
        assert after["total_free_blocks"] > before["total_free_blocks"]
        assert after["total_free_space"] >= before["total_free_space"] + 32 * 300


def _count_up(name, w, n):
    d = ZeroCopyDict.attach(name)
    for i in range(n):
        d[f"{w}-{i}"] = i
        d.incr("total")
    d.close()


def test_concurrent_writers(shm_name, mp_context):
    """No lock, no TimeoutError, no lost update: 4 processes writing at once."""
    n = 300
    with ZeroCopyDict.create(shm_name) as d:
        run_processes(mp_context, _count_up, [(shm_name, w, n) for w in range(4)])
        assert len(d) == 4 * n + 1 and d["total"] == 4 * n

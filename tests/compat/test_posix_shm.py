"""shmkit.compat.posix_shm against the posix-shm README
(/work/shared/seeds/001_*: Quick Start, Data Structures, Multiprocessing
Example)."""
import queue as stdqueue
import re

import pytest

import shmkit
from shmkit.compat.posix_shm import Array, Bitset, HashMap, Queue, SharedMemory, Stack

# ---- the README's examples, run as scripts ----


def test_example_quick_start(run_example):
    out = run_example("posix_shm_quick_start.py", ["/my_shared_mem"])
    assert out.splitlines() == ["Processing: {'task': 'process_data', 'id': 42}",
                                "Flag 42 is set"]


def test_example_data_structures(run_example):
    out = run_example("posix_shm_data_structures.py", ["/snippets"])
    assert out.splitlines() == ["processed", "an item 42.5 True False"]


def _add_main_guard(src):
    """The example starts processes at module level, which the spawn start
    method cannot run with any library (the child re-imports the main
    module): put its main part under ``if __name__ == "__main__":``."""
    head, sep, main = src.partition("# Main process\n")
    assert sep
    return head + 'if __name__ == "__main__":\n' + "".join(
        "    " + line if line.strip() else line for line in main.splitlines(True))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_example_multiprocessing(run_example, method):
    out = run_example("posix_shm_multiprocessing_mp.py", ["/work_queue"], method,
                      edit=_add_main_guard if method == "spawn" else None)
    tasks = [int(m) for m in re.findall(r"^Processing: task_(\d+)$", out, re.M)]
    # FIFO, each at most once: what the consumer got is task_0, task_1, ...
    assert tasks == list(range(len(tasks)))


# ---- SharedMemory ----


def test_shared_memory_names_and_attach(shm_name):
    shm = SharedMemory("/" + shm_name, size=1 << 20)
    try:
        assert shm.name == shm_name
        assert shm.size >= 1 << 20
        HashMap(shm, "m")["k"] = 1
        other = SharedMemory(shm_name, 0)              # no slash, size 0: attach
        assert HashMap(other, "m")["k"] == 1
        other.close()
    finally:
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory("/" + shm_name, 0)
    with pytest.raises(ValueError):
        SharedMemory(shm_name, -1)


def test_shared_memory_pickles_by_name(shm_name, mp_context):
    shm = SharedMemory(shm_name, 1 << 20)
    q = Queue(shm, "q", max_size=10)
    p = mp_context.Process(target=_push_from_child, args=(shm, 3))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert [q.pop() for _ in range(3)] == [0, 1, 2]
    shm.unlink()


def _push_from_child(shm, n):
    q = Queue(shm, "q")
    for i in range(n):
        q.push(i)


# ---- Queue ----


def test_queue(shm_name):
    shm = SharedMemory(shm_name, 1 << 20)
    q = Queue(shm, "q", max_size=3)
    assert q.empty() and not q.full() and q.size() == 0
    for item in ({"task": 1}, "two", b"three"):
        q.push(item)
    assert q.full() and q.size() == 3
    with pytest.raises(stdqueue.Full):
        q.push("four")
    assert Queue(shm, "q").size() == 3                 # attach by name
    assert [q.pop(), q.pop(), q.pop()] == [{"task": 1}, "two", b"three"]
    with pytest.raises(stdqueue.Empty):
        q.pop()
    assert q.pop(None) is None
    with pytest.raises(ValueError):
        Queue(shm, "q2", max_size=0)
    shm.unlink()


def _produce(name, w, n):
    shm = SharedMemory(name, 0)
    q = Queue(shm, "jobs")
    for i in range(n):
        while True:
            try:
                q.push((w, i))
                break
            except stdqueue.Full:
                pass


def test_queue_across_processes_exactly_once(shm_name, mp_context):
    shm = SharedMemory(shm_name, 1 << 20)
    q = Queue(shm, "jobs", max_size=100)
    n = 500
    procs = [mp_context.Process(target=_produce, args=(shm_name, w, n)) for w in range(2)]
    for p in procs:
        p.start()
    got = []
    while len(got) < 2 * n:
        got.append(q.get(timeout=60))
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(got) == sorted((w, i) for w in range(2) for i in range(n))
    for w in range(2):
        assert [i for ww, i in got if ww == w] == list(range(n))    # FIFO per producer
    shm.unlink()


# ---- Stack, HashMap, Bitset, Array ----


def test_stack(shm_name):
    shm = SharedMemory(shm_name, 1 << 20)
    s = Stack(shm, "s", max_size=2)
    assert s.empty() and s.size() == 0
    for i in range(5):                                 # max_size is not enforced
        s.push(i)
    assert s.size() == 5 and not s.empty()
    assert [s.pop() for _ in range(5)] == [4, 3, 2, 1, 0]
    with pytest.raises(IndexError):
        s.pop()
    shm.unlink()


def test_hashmap(shm_name):
    shm = SharedMemory(shm_name, 1 << 20)
    m = HashMap(shm, "m", max_entries=4)
    for i in range(100):                               # max_entries is not a limit
        m[f"k{i}"] = {"i": i}
    assert m["k7"] == {"i": 7} and "k7" in m and m.size() == 100 == len(m)
    del m["k7"]
    assert "k7" not in m
    with pytest.raises(KeyError):
        m["k7"]
    with pytest.raises(KeyError):
        del m["k7"]
    assert isinstance(m, shmkit.SharedDict)
    assert HashMap(shm, "m")["k8"] == {"i": 8}
    shm.unlink()


def test_bitset(shm_name):
    shm = SharedMemory(shm_name, 1 << 20)
    b = Bitset(shm, "b", size=1000)
    assert not b.test(42)
    b.set(42)
    assert b.test(42)
    b.flip(100)
    assert b.test(100)
    b.flip(100)
    assert not b.test(100)
    with pytest.raises(IndexError):
        b.set(1000)
    assert Bitset(shm, "b").test(42) and len(Bitset(shm, "b")) == 1000
    shm.unlink()


def test_array(shm_name):
    shm = SharedMemory(shm_name, 1 << 20)
    arr = Array(shm, "a", size=10)
    arr[0] = 42.5                                      # floats by default
    assert arr[0] == 42.5 and isinstance(arr[1], float) and len(arr) == 10
    ints = Array(shm, "i", size=4, dtype="int32")
    ints[1] = 7
    with pytest.raises(TypeError):
        ints[0] = 1.5
    assert Array(shm, "a")[0] == 42.5                  # attach without size
    with pytest.raises(IndexError):
        arr[10] = 1.0
    shm.unlink()

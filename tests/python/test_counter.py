"""Counter: the sharded counter from Python: arithmetic and reads, bad
input, pickling and the segment registry, real processes (fork and spawn,
16 of them) adding exactly, a forked child on a cell of its own, reset under
concurrent adds, and adders killed mid-run.  (A corrupt header:
test_bitset.py's test_corrupt_header_is_a_clean_error covers it with the
other fixed-size structures.)"""
import os
import pickle
import signal

import pytest

import shmkit
from shmkit import Counter


def test_add_value_reset(shm_name):
    c = Counter(shm_name, create=True)
    assert c.created and c.value == 0 and int(c) == 0 and c.cells == 256
    assert c.stats()["cells_claimed"] == 0 and c.stats()["cell"] == -1
    c.add()
    c.add(10)
    c.add(-3)
    c += 5
    c -= 2
    assert c.value == 11 and int(c) == 11
    st = c.check()
    assert st == c.stats()
    assert st["value"] == 11 and st["cells_claimed"] == 1 and st["cells_live"] == 1
    assert 0 <= st["cell"] < 256
    c.add(2**63 - 1)
    c.add(2**63 - 1)
    assert c.value == 9                      # wraps modulo 2**64 like int64
    assert c.reset() == 9 and c.value == 0
    assert repr(c).startswith("<shmkit.Counter") and "value=0" in repr(c)
    c.close()
    assert "closed" in repr(c)


def test_bad_input_changes_nothing(shm_name):
    c = Counter(shm_name, create=True)
    c.add(4)
    for bad, exc in ((1.5, TypeError), ("1", TypeError), (True, TypeError), (None, TypeError),
                     (2**63, OverflowError), (-2**63 - 1, OverflowError)):
        with pytest.raises(exc):
            c.add(bad)
        with pytest.raises(exc):
            c += bad
    with pytest.raises(TypeError):
        c.add(1, 2)
    assert c.value == 4
    for cells in (0, 3, 1 << 17, -1):
        with pytest.raises(ValueError, match="power of two"):
            Counter(shm_name + "x", create=True, cells=cells)
        assert not os.path.exists(f"/dev/shm/{shm_name}x")   # nothing left behind
    with pytest.raises(TypeError):
        Counter(shm_name + "x", create=True, cells=2.0)
    with pytest.raises(FileNotFoundError):
        Counter(shm_name + "missing", create=False)
    with pytest.raises(FileExistsError):
        Counter(shm_name, create=True)
    c.close()
    with pytest.raises(ValueError, match="closed"):
        c.add()
    with pytest.raises(ValueError, match="closed"):
        c.value


def test_segment_registry_and_pickle(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        c = seg.counter("hits", cells=8)
        assert c.cells == 8 and c.object_name == "hits"
        assert seg.counter("hits").cells == 8     # keeps its own count
        o = seg.open("hits")
        assert isinstance(o, Counter)
        seg.bitset("flags", 10)
        with pytest.raises(TypeError):
            seg.counter("flags")
        with pytest.raises(TypeError):
            seg.bitset("hits", 10)
    c.add(3)
    d = pickle.loads(pickle.dumps(c))
    d.add(4)
    assert c.value == 7 and o.value == 7
    for h in (c, d, o):
        h.close()
    with pytest.raises(ValueError):
        pickle.dumps(c)


def _adder(name, n, q):
    try:
        c = Counter(name)
        for _ in range(n):
            c.add()
        c += n
        st = c.stats()
        c.close()
        q.put(st["cell"])
    except BaseException as e:
        q.put(repr(e))


@pytest.mark.parametrize("procs", [16])
def test_processes_add_exactly(shm_name, mp_context, procs):
    c = Counter(shm_name, create=True)
    n = 5000
    q = mp_context.Queue()
    ps = [mp_context.Process(target=_adder, args=(shm_name, n, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    cells = [q.get(timeout=300) for _ in ps]
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert all(isinstance(x, int) for x in cells), cells
    assert len(set(cells)) == procs and -1 not in cells   # each its own cell
    assert c.value == 2 * n * procs
    assert c.check()["cells_claimed"] == procs
    c.close()


def test_forked_child_claims_its_own_cell(shm_name):
    c = Counter(shm_name, create=True)
    c.add()
    mine = c.stats()["cell"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            c.add()
            os.write(w, str(c.stats()["cell"]).encode())
        finally:
            os._exit(0)
    os.close(w)
    child_cell = int(os.read(r, 64))
    os.close(r)
    os.waitpid(pid, 0)
    assert child_cell != mine and child_cell >= 0
    assert c.value == 2 and c.stats()["cell"] == mine
    c.close()


def _spin(name, stop, q):
    c = Counter(name)
    n = 0
    while not stop.is_set():
        c.add()
        n += 1
    c.close()
    q.put(n)


def test_reset_under_adds_loses_nothing(shm_name):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    c = Counter(shm_name, create=True)
    stop, q = ctx.Event(), ctx.Queue()
    ps = [ctx.Process(target=_spin, args=(shm_name, stop, q)) for _ in range(3)]
    for p in ps:
        p.start()
    taken = 0
    for _ in range(300):
        taken += c.reset()
    stop.set()
    made = sum(q.get(timeout=60) for _ in ps)
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    # every add is somewhere: in what the resets took out, or still there
    assert taken + c.value == made
    c.close()


def _logged_adder(name, w):
    with shmkit.Segment(name, create=False) as seg:
        c, log = seg.counter("c"), seg.array("log", "int64", 4)
    k = 0
    while True:
        c.add()
        k += 1
        log[w] = k                  # committed: the add above is done


def test_sigkilled_adders_lose_no_committed_add(shm_name):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with shmkit.Segment(shm_name, create=True) as seg:
        c, log = seg.counter("c"), seg.array("log", "int64", 4)
    ps = [ctx.Process(target=_logged_adder, args=(shm_name, w)) for w in range(4)]
    for p in ps:
        p.start()
    while min(log) < 2000:
        pass
    for p in ps:
        os.kill(p.pid, signal.SIGKILL)
    for p in ps:
        p.join(60)
    committed = sum(log)
    v = c.value
    assert committed <= v <= committed + 4     # at most the in-flight adds
    st = c.check()
    assert st["cells_claimed"] == 4 and st["cells_live"] == 0
    c.add(5)                                   # lands on top of the dead's values
    assert c.value == v + 5
    c.close()
    log.close()

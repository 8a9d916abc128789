"""Tests of shmkit.Queue: the multiprocessing.Queue API, batches, pickling,
real producer/consumer processes (fork and spawn), SIGKILL, Ctrl-C."""
import multiprocessing as mp
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shmkit
from shmkit import _shmkit
from shmkit.queue import Queue
from shmkit.segment import Segment

CONTEXTS = ["fork", "spawn"]
JOIN_TIMEOUT = 120


def unique_name(tag="q"):
    return f"shmkit-test-{os.getpid()}-{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def name():
    n = unique_name()
    yield n
    try:
        shmkit.unlink(n)
    except FileNotFoundError:
        pass


@pytest.fixture
def q(name):
    qu = Queue(name, create=True)
    yield qu
    qu.close()


# ------------------------------------------------------------------ the API

def test_fifo_and_types(q):
    items = [b"", b"x" * 100, "text", 42, 3.5, None, {"a": [1, 2]}, (1, b"b"),
             bytearray(b"ba"), b"\x00" * 1000]
    for it in items:
        q.put(it)
    assert q.qsize() == len(items) and len(q) == len(items)
    assert not q.empty()
    got = [q.get() for _ in items]
    assert got == items
    assert type(got[8]) is bytearray
    assert q.empty() and q.qsize() == 0


def test_nonblocking_and_timeouts(name):
    qu = Queue(name, maxsize=2, create=True)
    with pytest.raises(queue.Empty):
        qu.get_nowait()
    with pytest.raises(queue.Empty):
        qu.get(False)
    with pytest.raises(queue.Empty):
        qu.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        qu.get(block=True, timeout=0)
    qu.put(1)
    qu.put_nowait(2)
    assert qu.full()
    with pytest.raises(queue.Full):
        qu.put_nowait(3)
    with pytest.raises(queue.Full):
        qu.put(3, timeout=0.01)
    with pytest.raises(queue.Full):
        qu.put(3, block=False)
    with pytest.raises(ValueError):
        qu.put(3, timeout=-1)
    with pytest.raises(ValueError):
        qu.get(timeout=-1)
    with pytest.raises(TypeError):
        qu.put()
    with pytest.raises(TypeError):
        qu.put(1, nonsense=2)
    assert qu.qsize() == 2
    assert [qu.get(), qu.get(timeout=5)] == [1, 2]
    assert qu.maxsize == 2
    qu.close()


def test_unbounded_maxsize(name):
    # multiprocessing.Queue: maxsize <= 0 is unbounded
    qu = Queue(name, maxsize=-5, create=True)
    assert qu.maxsize == 0
    for i in range(1000):
        qu.put_nowait(i)
    assert not qu.full()
    assert qu.get_many() == list(range(1000))
    qu.close()


def test_push_pop(q):
    q.push(b"a")
    q.push("b")
    assert q.pop() == b"a"
    assert q.pop() == "b"
    with pytest.raises(queue.Empty):
        q.pop()
    assert q.pop("dflt") == "dflt"


def test_put_many_get_many(name):
    qu = Queue(name, maxsize=10, create=True)
    assert qu.put_many([b"a", "b", 3]) == 3
    assert qu.put_many([]) == 0
    assert qu.get_many(2) == [b"a", "b"]
    assert qu.get_many(max_items=5, block=False) == [3]
    with pytest.raises(queue.Empty):
        qu.get_many(5, block=False)
    with pytest.raises(queue.Empty):
        qu.get_many(5, timeout=0.01)
    with pytest.raises(queue.Full) as ei:
        qu.put_many(range(15), block=False)
    assert ei.value.count == 10
    with pytest.raises(queue.Full) as ei:
        qu.put_many([b"x"], timeout=0.01)
    assert ei.value.count == 0
    assert qu.get_many(100) == list(range(10))
    with pytest.raises(ValueError):
        qu.get_many(0)
    with pytest.raises(TypeError):
        qu.get_many("3")
    with pytest.raises(TypeError):
        qu.put_many(5)
    qu.close()


def test_large_items_out_of_line(name):
    qu = Queue(name, ring_bytes=4096, create=True)
    big = os.urandom(3 << 20)
    qu.put(b"small")
    qu.put(big)
    qu.put(b"after")
    st_ = qu.check()
    assert st_["out_of_line"] == 1 and st_["items"] == 3
    assert qu.get() == b"small"
    assert qu.get() == big
    assert qu.get() == b"after"
    assert qu.check()["out_of_line"] == 0
    # items that no longer fit inline spill out of line: with maxsize=0 the
    # ring bounds the number of items (24 ring bytes each at most)
    n = 0
    with pytest.raises(queue.Full):
        while True:
            qu.put_nowait(b"y" * 200)
            n += 1
    assert n == 4096 // 208 + 4096 % 208 // 24   # 19 inline, then 6 spilled
    # full() means that an item of more than 8 bytes does not fit (or
    # maxsize is reached), and put says the same
    assert qu.full()
    with pytest.raises(queue.Full):
        qu.put_nowait(b"z" * 9)
    assert qu.check()["items"] == n
    qu.close()


def test_unbounded_holds_what_the_heap_holds(name):
    """maxsize=0: 4 KiB items in a 64 KiB ring do not stop at 15 (the ring's
    bytes); they spill to the heap, and full() agrees with put."""
    qu = Queue(name, create=True, ring_bytes=65536, size=8 << 20)
    n = 0
    while not qu.full():
        qu.put_nowait(bytes([n % 256]) * 4096)
        n += 1
    assert n > 15 * 10
    with pytest.raises(queue.Full):
        qu.put_nowait(b"x" * 4096)
    for i in range(n):
        assert qu.get_nowait() == bytes([i % 256]) * 4096
    assert qu.check()["out_of_line"] == 0
    qu.close()


def test_allow_pickle_false(name):
    qu = Queue(name, create=True, allow_pickle=False)
    assert qu.allow_pickle is False
    with pytest.raises(TypeError):
        qu.put("str")
    with pytest.raises(TypeError):
        qu.put_many([b"ok", 1])
    assert qu.qsize() == 0
    # another handle that allows pickle puts one: this handle refuses to
    # unpickle it and leaves it in place
    other = Queue(name, create=False)
    other.put({"evil": 1})
    other.put(b"raw")
    with pytest.raises(TypeError):
        qu.get_nowait()
    assert qu.qsize() == 2
    assert other.get() == {"evil": 1}
    assert qu.get() == b"raw"
    other.put(b"1")
    other.put(2)
    assert qu.get_many(10) == [b"1"]   # stops before the pickle
    assert other.get() == 2
    other.close()
    qu.close()


def test_closed_handle(name):
    qu = Queue(name, create=True)
    qu.put(1)
    qu.close()
    qu.close()   # idempotent
    assert qu.closed
    for call in (lambda: qu.put(1), qu.get, qu.get_nowait, qu.qsize, qu.empty,
                 qu.full, lambda: qu.put_many([1]), qu.get_many, qu.check,
                 lambda: qu.push(1), qu.pop, lambda: qu.maxsize):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        pickle.dumps(qu)
    with pytest.raises(ValueError):
        with qu:
            pass
    # the queue itself is still there
    again = Queue(name, create=False)
    assert again.get() == 1
    again.close()


def test_context_manager_pickle_and_segment(name):
    with Queue(name, maxsize=7, create=True) as qu:
        qu.put("x")
        clone = pickle.loads(pickle.dumps(qu))
        assert clone.get() == "x"
        assert clone.maxsize == 7
        clone.close()
    assert qu.closed
    with Segment(name, create=False) as seg:
        a = seg.queue("jobs", maxsize=3)
        b = seg.queue("jobs")
        assert a.created and not b.created
        assert b.maxsize == 3
        a.put(b"1")
        assert b.get() == b"1"
        assert seg.open("jobs").maxsize == 3
        seg.stack("st").close()
        with pytest.raises(TypeError):
            seg.queue("st")
        with pytest.raises(TypeError):
            seg.stack("jobs")
        with pytest.raises(ValueError):
            seg.queue("")
        a.close()
        b.close()


def test_create_flags(name):
    with pytest.raises(FileNotFoundError):
        Queue(name, create=False)
    qu = Queue(name, create=True)
    with pytest.raises(FileExistsError):
        Queue(name, create=True)
    qu.close()
    qu.unlink()
    with pytest.raises(FileNotFoundError):
        Queue(name, create=False)


def test_corrupt_header_detected(name):
    with Segment(name, create=True) as seg:
        seg.queue("q").close()
        info = seg.lookup("q")
    # overwrite the ring size field (offset 24 of the queue header)
    path = f"/dev/shm/{name}"
    with open(path, "r+b") as f:
        f.seek(info["offset"] + 24)
        f.write(struct.pack("<Q", 12345))
    with Segment(name, create=False) as seg:
        with pytest.raises(shmkit.CorruptSegmentError):
            seg.queue("q")


# ----------------------------------------------------------- model testing

class QueueModel(RuleBasedStateMachine):
    """The queue against collections.deque, with maxsize and a small ring."""

    def __init__(self):
        super().__init__()
        self.name = unique_name("hyp")
        self.maxsize = 20
        self.q = Queue(self.name, maxsize=self.maxsize, ring_bytes=4096, create=True)
        self.model = deque()
        self.bytes_used = 0

    items = st.one_of(st.binary(max_size=700), st.integers(), st.text(max_size=20),
                      st.lists(st.integers(), max_size=5))

    def _fits(self, item):
        return len(self.model) < self.maxsize

    @rule(item=items)
    def put_nowait(self, item):
        try:
            self.q.put_nowait(item)
        except queue.Full:
            # full by count, or by ring bytes (which the model does not
            # track exactly): never when clearly empty enough
            assert len(self.model) >= self.maxsize or self.q.check()["used_bytes"] > 1000
            return
        self.model.append(item)

    @rule(items=st.lists(st.binary(max_size=50), max_size=8))
    def put_many(self, items):
        try:
            n = self.q.put_many(items, block=False)
        except queue.Full as e:
            n = e.count
        self.model.extend(items[:n])

    @rule()
    def get_nowait(self):
        if not self.model:
            with pytest.raises(queue.Empty):
                self.q.get_nowait()
        else:
            assert self.q.get_nowait() == self.model.popleft()

    @precondition(lambda self: self.model)
    @rule(k=st.integers(1, 10))
    def get_many(self, k):
        got = self.q.get_many(k, block=False)
        want = [self.model.popleft() for _ in range(min(k, len(got)))]
        assert got == want and len(got) == min(k, len(got))
        assert len(got) >= 1

    @invariant()
    def sizes(self):
        assert self.q.qsize() == len(self.model)
        assert self.q.empty() == (not self.model)
        assert self.q.check()["items"] == len(self.model)

    def teardown(self):
        self.q.close()
        shmkit.unlink(self.name)


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


# ------------------------------------------------------- real processes

def _producer(qu, pid, n):
    for i in range(n):
        qu.put(struct.pack("<II", pid, i))


def _consumer(qu, results):
    seen = []
    last = {}
    while True:
        item = qu.get()
        if item == b"":
            break
        p, i = struct.unpack("<II", item)
        # FIFO per producer, as seen by this consumer
        assert last.get(p, -1) < i, (p, last.get(p), i)
        last[p] = i
        seen.append(item)
    results.put(b"".join(seen))


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_4x4_exactly_once_200k(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    P, C, N = 4, 4, 50_000
    qu = Queue(name, maxsize=10_000, create=True)
    with Segment(name, create=False) as seg:
        results = seg.queue("results")
    cons = [ctx.Process(target=_consumer, args=(qu, results)) for _ in range(C)]
    prods = [ctx.Process(target=_producer, args=(qu, p, N)) for p in range(P)]
    for p in cons + prods:
        p.start()
    for p in prods:
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
    for _ in range(C):
        qu.put(b"")
    chunks = [results.get(timeout=JOIN_TIMEOUT) for _ in range(C)]
    for p in cons:
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
    got = sorted(struct.unpack("<II", c[k:k + 8]) for c in chunks
                 for k in range(0, len(c), 8))
    assert len(got) == P * N
    assert got == [(p, i) for p in range(P) for i in range(N)]
    assert qu.check()["items"] == 0
    results.close()
    qu.close()


def _batch_producer(qu, pid, n):
    for start in range(0, n, 100):
        qu.put_many([struct.pack("<II", pid, i) for i in range(start, min(n, start + 100))])
    qu.put(b"")


def _batch_consumer(qu, nprod, results):
    last = {}
    count = 0
    done = 0
    while done < nprod:
        for item in qu.get_many(64, timeout=JOIN_TIMEOUT):
            if item == b"":
                done += 1
                continue
            p, i = struct.unpack("<II", item)
            assert last.get(p, -1) + 1 == i   # single consumer: exact FIFO
            last[p] = i
            count += 1
    results.put(count)


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_batches_between_processes(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    qu = Queue(name, maxsize=500, create=True)
    results = Queue(name + "-r", create=True)
    try:
        prods = [ctx.Process(target=_batch_producer, args=(qu, p, 20_000)) for p in range(2)]
        cons = ctx.Process(target=_batch_consumer, args=(qu, 2, results))
        for p in prods + [cons]:
            p.start()
        assert results.get(timeout=JOIN_TIMEOUT) == 40_000
        for p in prods + [cons]:
            p.join(JOIN_TIMEOUT)
            assert p.exitcode == 0
    finally:
        results.close()
        results.unlink()
        qu.close()


def _blocked_getter(qu, out):
    out.put(("got", qu.get()))


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_blocked_get_is_woken(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    qu = Queue(name, create=True)
    out = Queue(name + "-o", create=True)
    try:
        p = ctx.Process(target=_blocked_getter, args=(qu, out))
        p.start()
        # wait until the child sleeps on the futex (its waiter is counted)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while qu.check()["get_waiters"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert qu.check()["get_waiters"] == 1
        qu.put({"hello": 1})
        assert out.get(timeout=JOIN_TIMEOUT) == ("got", {"hello": 1})
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
        assert qu.check()["get_waiters"] == 0
    finally:
        out.close()
        out.unlink()
        qu.close()


def _pool_put(args):
    qu, i = args
    qu.put(i * i)
    return i


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_pool_pickles_by_name(q, ctx_name):
    with mp.get_context(ctx_name).Pool(2) as pool:
        assert sorted(pool.map(_pool_put, [(q, i) for i in range(20)])) == list(range(20))
    assert sorted(q.get_many(100)) == [i * i for i in range(20)]


def test_ctrl_c_interrupts_blocked_get(name):
    Queue(name, create=True).close()
    code = textwrap.dedent(f"""
        import sys
        from shmkit.queue import Queue
        q = Queue({name!r}, create=False)
        print("ready", flush=True)
        try:
            q.get()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(3)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        # the child is (or is about to be) asleep in get(); SIGINT until it
        # reports the KeyboardInterrupt
        qu = Queue(name, create=False)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while qu.check()["get_waiters"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        qu.close()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=JOIN_TIMEOUT)
        assert "interrupted" in out
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_signal_handler_runs_and_get_continues(q):
    # a handler that does not raise: the wait resumes and gets the item
    import threading

    fired = []
    old = signal.signal(signal.SIGUSR1, lambda *a: fired.append(1))
    try:
        def later():
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            q2 = Queue(q.segment_name, create=False)
            q2.put("late")
            q2.close()
        t = threading.Thread(target=later)
        t.start()
        assert q.get(timeout=JOIN_TIMEOUT) == "late"
        t.join()
        assert fired
    finally:
        signal.signal(signal.SIGUSR1, old)


# --------------------------------------------------------------- SIGKILL

def _endless_producer(qu):
    i = 0
    while True:
        qu.put(struct.pack("<Q", i) + b"p" * (i % 300))
        i += 1


def _endless_consumer(qu, ready):
    ready.put(1)
    while True:
        qu.get()


def _hammer(qu):
    i = 0
    while True:
        try:
            qu.put_many([b"h" * (i % 900)] * 3, block=False)   # some out of line
        except queue.Full:
            pass
        try:
            qu.get_many(2, block=False)
        except queue.Empty:
            pass
        i += 1


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_sigkill_producer(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    qu = Queue(name, maxsize=1000, ring_bytes=65536, create=True)
    p = ctx.Process(target=_endless_producer, args=(qu,))
    p.start()
    first = qu.get(timeout=JOIN_TIMEOUT)
    seen = [struct.unpack("<Q", first[:8])[0]]
    for _ in range(2000):
        seen.append(struct.unpack("<Q", qu.get(timeout=JOIN_TIMEOUT)[:8])[0])
    os.kill(p.pid, signal.SIGKILL)
    p.join(JOIN_TIMEOUT)
    assert qu.check()["items"] == qu.qsize()
    while True:
        try:
            item = qu.get_nowait()
        except queue.Empty:
            break
        seen.append(struct.unpack("<Q", item[:8])[0])
    # every item the producer committed arrives exactly once, in order
    assert seen == list(range(len(seen)))
    qu.put(b"still works")
    assert qu.get() == b"still works"
    qu.close()


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_sigkill_consumer(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    qu = Queue(name, ring_bytes=8 << 20, create=True)
    ready = Queue(name + "-r", create=True)
    try:
        n = 200_000
        qu.put_many([struct.pack("<Q", i) for i in range(n)])
        p = ctx.Process(target=_endless_consumer, args=(qu, ready))
        p.start()
        ready.get(timeout=JOIN_TIMEOUT)
        while qu.qsize() > n // 2 and p.is_alive():
            time.sleep(0.001)
        os.kill(p.pid, signal.SIGKILL)
        p.join(JOIN_TIMEOUT)
        qu.check()
        rest = [struct.unpack("<Q", b)[0] for b in qu.get_many(block=False)] if qu.qsize() else []
        # what is left is an unbroken suffix: nothing lost or duplicated
        # beyond what the dead consumer took
        assert rest == list(range(n - len(rest), n))
        # a consumer killed while asleep in get() does not wedge others
        p = ctx.Process(target=_endless_consumer, args=(qu, ready))
        p.start()
        ready.get(timeout=JOIN_TIMEOUT)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while qu.check()["get_waiters"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
        p.join(JOIN_TIMEOUT)
        qu.put(b"x")
        assert qu.get(timeout=JOIN_TIMEOUT) == b"x"
    finally:
        ready.close()
        ready.unlink()
        qu.close()


def test_sigkill_at_random_instants(name):
    ctx = mp.get_context("fork")
    qu = Queue(name, ring_bytes=8192, create=True)
    for rnd in range(15):
        p = ctx.Process(target=_hammer, args=(qu,))
        p.start()
        time.sleep(0.01 + 0.003 * (rnd % 5))
        os.kill(p.pid, signal.SIGKILL)
        p.join(JOIN_TIMEOUT)
        st_ = qu.check()   # raises CorruptSegmentError if the ring is broken
        assert st_["items"] == qu.qsize()
        if st_["items"]:
            assert len(qu.get_many(block=False)) == st_["items"]
        qu.put(b"ok", timeout=JOIN_TIMEOUT)
        assert qu.get_many(block=False) == [b"ok"]
        assert qu.empty()
    qu.close()


# --------------------------------------------------------------- threads

def test_threads_share_a_handle(q):
    import threading

    N, T = 5000, 4
    out = []
    lock = threading.Lock()

    def consume():
        mine = []
        while True:
            item = q.get(timeout=JOIN_TIMEOUT)
            if item is None:
                break
            mine.append(item)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=consume) for _ in range(T)]
    for t in threads:
        t.start()
    for i in range(N):
        q.put(i)
    for _ in range(T):
        q.put(None)
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert sorted(out) == list(range(N))


def test_close_while_another_thread_waits(name):
    import threading

    qu = Queue(name, create=True)
    errors = []

    def waiter():
        try:
            qu.get()
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    while qu.check()["get_waiters"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    qu.close()            # the waiter still holds the C handle: deferred
    other = Queue(name, create=False)
    other.put(b"wake")    # wakes the waiter, which sees the handle closed
    t.join(JOIN_TIMEOUT)
    assert not t.is_alive() and len(errors) == 1
    assert other.get_nowait() == b"wake"   # it did not take the item
    other.close()


@pytest.mark.parametrize("how", ["get", "get_timeout", "put", "get_many"])
def test_close_wakes_this_process_waiters(name, how):
    """close() wakes the threads of this process blocked in the handle at
    once: no other handle puts, and a long timeout does not have to end."""
    import threading

    qu = Queue(name, create=True, maxsize=1)
    if how == "put":
        qu.put(b"fill")
    calls = {"get": lambda: qu.get(), "get_timeout": lambda: qu.get(timeout=600),
             "put": lambda: qu.put(b"x"), "get_many": lambda: qu.get_many(5)}
    errors = []

    def waiter():
        try:
            calls[how]()
        except ValueError as e:
            errors.append(e)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    key = "put_waiters" if how == "put" else "get_waiters"
    deadline = time.monotonic() + JOIN_TIMEOUT
    while qu.check()[key] < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    qu.close()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads) and len(errors) == 3
    with Queue(name, create=False) as other:
        assert other.check()[key] == 0
        assert other.qsize() == (1 if how == "put" else 0)


def test_bad_input_changes_nothing(name):
    qu = Queue(name, maxsize=5, create=True)
    qu.put(b"keep")
    before = (qu.qsize(), qu.check()["used_bytes"])
    bad = [
        (lambda: qu.put(b"x", timeout="1"), TypeError),
        (lambda: qu.put(b"x", timeout=-0.5), ValueError),
        (lambda: qu.put(b"x", timeout=float("nan")), ValueError),
        (lambda: qu.put(b"x", True, 1, 2), TypeError),
        (lambda: qu.get(timeout=[]), TypeError),
        (lambda: qu.get(1, 2, 3), TypeError),
        (lambda: qu.get(bogus=1), TypeError),
        (lambda: qu.get_many(-1), ValueError),
        (lambda: qu.get_many(1.5), TypeError),
        (lambda: qu.put_many(None), TypeError),
        (lambda: qu.put(lambda: 0), (pickle.PicklingError, AttributeError, TypeError)),
        (lambda: qu.put_many([b"ok", lambda: 0]), (pickle.PicklingError, AttributeError, TypeError)),
        (lambda: qu.pop(1, 2), TypeError),
        (lambda: qu.put_nowait(), TypeError),
    ]
    for call, exc in bad:
        with pytest.raises(exc):
            call()
        assert (qu.qsize(), qu.check()["used_bytes"]) == before
    with Segment(name, create=False) as seg:
        with pytest.raises(ValueError):
            seg.queue("x" * 100)
        with pytest.raises(ValueError):
            seg.queue("ok", ring_bytes=-1)
        with pytest.raises(ValueError):
            seg.queue("ok", ring_bytes=1 << 40)
        with pytest.raises(TypeError):
            seg.queue("ok", maxsize="3")
        with pytest.raises(TypeError):
            seg.queue(42)
    with pytest.raises(TypeError):
        _shmkit.Queue("not a segment", "q")
    assert qu.get() == b"keep"
    qu.close()

"""Tests of shmkit.Stack: the API, a model test, real processes (fork and
spawn) pushing and popping at once, SIGKILL."""
import multiprocessing as mp
import os
import pickle
import signal
import struct
import time
import uuid

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import shmkit
from conftest import busy_workers
from shmkit.queue import Queue
from shmkit.segment import Segment
from shmkit.stack import Stack

CONTEXTS = ["fork", "spawn"]
JOIN_TIMEOUT = 120


def unique_name(tag="s"):
    return f"shmkit-test-{os.getpid()}-{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def name():
    n = unique_name()
    yield n
    for suffix in ("", "-r"):
        try:
            shmkit.unlink(n + suffix)
        except FileNotFoundError:
            pass


@pytest.fixture
def s(name):
    st_ = Stack(name, create=True)
    yield st_
    st_.close()


def test_lifo_and_types(s):
    items = [b"", b"x" * 100, "text", 42, None, {"a": [1, 2]}, b"\x00" * 5000]
    for it in items:
        s.push(it)
    assert len(s) == len(items) and bool(s)
    assert s.peek() == items[-1]
    assert len(s) == len(items)
    got = [s.pop() for _ in items]
    assert got == items[::-1]
    assert len(s) == 0 and not s


def test_empty_and_defaults(s):
    with pytest.raises(IndexError):
        s.pop()
    with pytest.raises(IndexError):
        s.peek()
    assert s.pop(None) is None
    assert s.pop("d") == "d"
    assert s.peek(0) == 0
    with pytest.raises(TypeError):
        s.pop(1, 2)
    s.push(b"1")
    assert s.pop("d") == b"1"


def test_allow_pickle_false(name):
    raw = Stack(name, create=True, allow_pickle=False)
    with pytest.raises(TypeError):
        raw.push("str")
    assert len(raw) == 0
    other = Stack(name, create=False)
    other.push([1])
    with pytest.raises(TypeError):
        raw.pop()
    with pytest.raises(TypeError):
        raw.peek()
    assert len(raw) == 1
    assert other.pop() == [1]
    raw.push(b"ok")
    assert other.pop() == b"ok"
    other.close()
    raw.close()


def test_closed_pickle_context_segment(name):
    with Stack(name, create=True) as s:
        s.push("a")
        clone = pickle.loads(pickle.dumps(s))
        assert clone.pop() == "a"
        clone.close()
    assert s.closed
    for call in (lambda: s.push(1), s.pop, s.peek, lambda: len(s), s.check):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        pickle.dumps(s)
    with Segment(name, create=False) as seg:
        a = seg.stack("st")
        b = seg.open("st")
        a.push(b"x")
        assert b.pop() == b"x"
        a.close()
        b.close()
    with pytest.raises(FileExistsError):
        Stack(name, create=True)


def test_check_reports(s):
    for i in range(10):
        s.push(b"y" * i)
    st_ = s.check()
    assert st_["items"] == 10 and st_["counter"] == 10
    assert st_["bytes"] == sum(range(10))
    assert st_["total_push"] == 10


class StackModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.name = unique_name("hyp")
        self.s = Stack(self.name, create=True)
        self.model = []

    @rule(item=st.one_of(st.binary(max_size=300), st.integers(), st.text(max_size=10)))
    def push(self, item):
        self.s.push(item)
        self.model.append(item)

    @rule()
    def pop(self):
        if self.model:
            assert self.s.pop() == self.model.pop()
        else:
            with pytest.raises(IndexError):
                self.s.pop()

    @rule()
    def peek(self):
        assert self.s.peek("empty") == (self.model[-1] if self.model else "empty")

    @invariant()
    def length(self):
        assert len(self.s) == len(self.model)

    def teardown(self):
        self.s.close()
        shmkit.unlink(self.name)


TestStackModel = StackModel.TestCase
TestStackModel.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


def _push_pop_worker(s, wid, n, results):
    popped = []
    for i in range(n):
        s.push(struct.pack("<II", wid, i))
        item = s.pop(None)
        if item is not None:
            popped.append(item)
        if i % 7 == 0:
            s.peek(None)
    results.put(b"".join(popped))


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_processes_exactly_once(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    W, N = 4, 20_000
    s = Stack(name, create=True)
    results = Queue(name + "-r", create=True)
    procs = [ctx.Process(target=_push_pop_worker, args=(s, w, N, results)) for w in range(W)]
    for p in procs:
        p.start()
    chunks = [results.get(timeout=JOIN_TIMEOUT) for _ in range(W)]
    for p in procs:
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
    while True:
        item = s.pop(None)
        if item is None:
            break
        chunks.append(item)
    got = sorted(struct.unpack("<II", c[k:k + 8]) for c in chunks for k in range(0, len(c), 8))
    assert got == [(w, i) for w in range(W) for i in range(N)]
    assert s.check() == {"items": 0, "counter": 0, "bytes": 0,
                         "total_push": W * N, "total_pop": W * N, "unverified": False}
    results.close()
    s.close()


def _endless_push_pop(s, rnd):
    i = 0
    while True:
        s.push(struct.pack("<QQ", rnd, i))
        if i % 3:
            s.pop(None)
        i += 1


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_sigkill(name, ctx_name):
    ctx = mp.get_context(ctx_name)
    s = Stack(name, create=True)
    for rnd in range(5 if ctx_name == "spawn" else 15):
        p = ctx.Process(target=_endless_push_pop, args=(s, rnd))
        p.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while len(s) < 50 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.002 * (rnd % 4))
        os.kill(p.pid, signal.SIGKILL)
        p.join(JOIN_TIMEOUT)
        # the list is intact; the counter may be one off (killed between
        # CAS and counter update): repair fixes it
        st_ = s.check(repair=True)
        assert s.check()["counter"] == st_["items"] == len(s)
        s.push(b"mine")
        assert s.pop() == b"mine"
    # every item left is unique
    seen = []
    while len(s):
        seen.append(s.pop())
    assert len(set(seen)) == len(seen)
    s.close()


def test_bad_input_changes_nothing(s):
    s.push(b"keep")
    before = s.check()
    for call, exc in [
        (lambda: s.push(lambda: 0), (pickle.PicklingError, AttributeError, TypeError)),
        (lambda: s.push(), TypeError),
        (lambda: s.pop(1, 2), TypeError),
        (lambda: s.peek(1, 2), TypeError),
        (lambda: s.check(repair="x", extra=1), TypeError),
    ]:
        with pytest.raises(exc):
            call()
        assert s.check() == before
    with Segment(s.segment_name, create=False) as seg:
        with pytest.raises(ValueError):
            seg.stack("")
        with pytest.raises(TypeError):
            seg.stack(None)
    assert s.pop() == b"keep"


def _push_pop(name, stop, wid):
    st_ = Stack(name, create=False)
    i = 0
    while not stop.is_set():
        st_.push(i)
        st_.pop()
        i += 1
    st_.close()


def test_check_while_other_processes_push_and_pop(s, name):
    # check() walks a list that other processes change at its head: a node
    # popped and freed under the walk must not be reported as corruption.
    # It must never be; once they stop the check is exact and verified.
    for i in range(300):            # a long list: each walk takes a while
        s.push(i)
    with busy_workers(_push_pop, name) as procs:
        # until they are at work (or one died: busy_workers then reports it)
        while s.check()["total_push"] == 300 and all(p.is_alive() for p in procs):
            pass
        for _ in range(3000):
            s.check()
    st_ = s.check()
    assert st_["items"] == 300 == len(s) and not st_["unverified"]

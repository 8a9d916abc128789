"""The checker itself: known non-linearizable histories are rejected (with a
witness), known-good concurrent ones accepted, sequential histories of every
model accepted, and any one changed result of a sequential history rejected."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lincheck_core import Op, Raised, check
from lincheck_models import (MODELS, AllocatorModel, ArrayModel, BitsetModel, DictModel,
                             QueueModel, StackModel, run_sequential)

KE = Raised("KeyError")


def h(*rows):
    """Rows of (pid, name, args, result, call, ret)."""
    return [Op(*row) for row in rows]


BAD = {
    "stale read after a completed write": (DictModel(), h(
        (0, "set", ("k", 1), None, 0, 10),
        (0, "set", ("k", 2), None, 20, 30),
        (1, "get", ("k",), 1, 40, 50))),
    "get misses a present key": (DictModel(), h(
        (0, "set", ("k", 1), None, 0, 10),
        (1, "set", ("j", 1), None, 5, 60),
        (1, "get", ("k",), None, 20, 30))),
    "getitem KeyError for a present key": (DictModel(), h(
        (0, "incr", ("k", 1), 1, 0, 10),
        (1, "getitem", ("k",), KE, 20, 30))),
    "contains False for a present key": (DictModel(), h(
        (0, "setdefault", ("k", 3), 3, 0, 10),
        (1, "contains", ("k",), False, 20, 30))),
    "lost increment": (DictModel(), h(
        (0, "incr", ("k", 1), 1, 0, 10),
        (1, "incr", ("k", 1), 1, 5, 15))),
    "two compare_and_swap both succeed": (DictModel(), h(
        (0, "set", ("k", 0), None, 0, 1),
        (1, "compare_and_swap", ("k", 0, 1), True, 2, 10),
        (2, "compare_and_swap", ("k", 0, 2), True, 3, 11))),
    "delete of a deleted key succeeds": (DictModel(), h(
        (0, "set", ("k", 0), None, 0, 1),
        (1, "delete", ("k",), None, 2, 10),
        (2, "pop", ("k",), 0, 12, 20))),
    "setdefault overwrites": (DictModel(), h(
        (0, "setdefault", ("k", 1), 1, 0, 10),
        (1, "setdefault", ("k", 2), 2, 20, 30))),
    "duplicate queue delivery": (QueueModel(), h(
        (0, "put", (b"a",), None, 0, 10),
        (1, "get", (), b"a", 20, 30),
        (2, "get", (), b"a", 25, 40))),
    "FIFO reorder of non-overlapping puts": (QueueModel(), h(
        (0, "put", (b"a",), None, 0, 10),
        (0, "put", (b"b",), None, 20, 30),
        (1, "get", (), b"b", 40, 50),
        (1, "get", (), b"a", 60, 70))),
    "queue Empty with an item in it": (QueueModel(), h(
        (0, "put", (b"a",), None, 0, 10),
        (1, "get", (), Raised("Empty"), 20, 30))),
    "queue item from nowhere": (QueueModel(), h(
        (0, "put", (b"a",), None, 0, 10),
        (1, "get", (), b"z", 5, 30))),
    "stack pops the bottom first": (StackModel(), h(
        (0, "push", (b"a",), None, 0, 10),
        (0, "push", (b"b",), None, 20, 30),
        (1, "pop", (), b"a", 40, 50))),
    "stack duplicate pop": (StackModel(), h(
        (0, "push", (b"a",), None, 0, 10),
        (1, "pop", (), b"a", 20, 30),
        (2, "pop", (), b"a", 22, 35))),
    "stack peek sees a popped item": (StackModel(), h(
        (0, "push", (b"a",), None, 0, 10),
        (1, "pop", (), b"a", 20, 30),
        (2, "peek", (), b"a", 40, 50))),
    "a bit flip observed twice": (BitsetModel(), h(
        (0, "flip", (3,), False, 0, 10),
        (1, "flip", (3,), False, 5, 15))),
    "set claims a bit twice": (BitsetModel(), h(
        (0, "set", (3,), False, 0, 10),
        (1, "set", (3,), False, 20, 30))),
    "lost array add": (ArrayModel(), h(
        (0, "add", (0, 1), 0, 0, 10),
        (1, "add", (0, 1), 0, 5, 15))),
    "two array CAS both succeed": (ArrayModel(), h(
        (0, "compare_and_swap", (1, 0, 5), True, 0, 10),
        (1, "compare_and_swap", (1, 0, 6), True, 5, 15))),
    "a block live twice": (AllocatorModel(), h(
        (0, "allocate", (64,), 128, 0, 10),
        (1, "allocate", (64,), 160, 20, 30))),
    "a block's content overwritten": (AllocatorModel(), h(
        (0, "allocate", (8,), 0, 0, 10),
        (0, "write", (0, 8, b"AAAAAAAA"), None, 11, 12),
        (0, "read", (0, 8), b"AAAABBBB", 30, 40))),
    "a double free accepted": (AllocatorModel(), h(
        (0, "allocate", (8,), 0, 0, 10),
        (0, "free", (0, 8), None, 11, 12),
        (1, "free", (0, 8), None, 20, 30))),
}

GOOD = {
    "read overlapping a write sees the old value": (DictModel(), h(
        (0, "set", ("k", 1), None, 0, 10),
        (1, "get", ("k",), None, 5, 15))),
    "read overlapping a write sees the new value": (DictModel(), h(
        (0, "set", ("k", 1), None, 0, 10),
        (1, "get", ("k",), 1, 5, 15),
        (2, "get", ("k",), None, 6, 16))),
    "overlapping increments return in either order": (DictModel(), h(
        (0, "incr", ("k", 1), 2, 0, 10),
        (1, "incr", ("k", 1), 1, 5, 15),
        (2, "getitem", ("k",), 2, 20, 30))),
    "one CAS wins, one loses": (DictModel(), h(
        (0, "set", ("k", 0), None, 0, 1),
        (1, "compare_and_swap", ("k", 0, 1), False, 2, 10),
        (2, "compare_and_swap", ("k", 0, 2), True, 3, 11),
        (1, "pop", ("k", -1), 2, 12, 13),
        (1, "pop", ("k", -1), -1, 14, 15))),
    "equal timestamps overlap": (DictModel(), h(
        (0, "set", ("k", 1), None, 0, 10),
        (1, "contains", ("k",), False, 10, 20))),
    "overlapping puts dequeue in either order": (QueueModel(), h(
        (0, "put", (b"a",), None, 0, 10),
        (1, "put", (b"b",), None, 5, 15),
        (2, "get", (), b"b", 20, 30),
        (2, "get", (), b"a", 40, 50),
        (2, "get", (), Raised("Empty"), 60, 70))),
    "a get overlapping a put may be Empty": (QueueModel(), h(
        (0, "put", (b"a",), None, 0, 100),
        (1, "get", (), Raised("Empty"), 10, 20),
        (1, "get", (), b"a", 30, 120))),
    "stack push and pop overlap": (StackModel(), h(
        (0, "push", (b"a",), None, 0, 10),
        (1, "pop", (), b"a", 5, 15),
        (2, "peek", (), Raised("IndexError"), 6, 16),
        (2, "push", (b"b",), None, 20, 30),
        (2, "peek", (), b"b", 31, 32))),
    "overlapping flips see both values": (BitsetModel(), h(
        (0, "flip", (3,), True, 0, 10),
        (1, "flip", (3,), False, 5, 15),
        (2, "test", (3,), False, 20, 30),
        (2, "assign", (3, True), None, 31, 32),
        (2, "clear", (3,), True, 33, 34))),
    "array add, exchange, CAS": (ArrayModel(), h(
        (0, "add", (0, 5), 0, 0, 10),
        (1, "exchange", (0, 7), 5, 5, 15),
        (2, "compare_and_swap", (0, 7, 1), True, 20, 30),
        (2, "get", (0,), 1, 31, 32))),
    "a block reused after an overlapping free": (AllocatorModel(), h(
        (0, "allocate", (64,), 128, 0, 10),
        (0, "write", (128, 64, b"x" * 64), None, 11, 12),
        (0, "read", (128, 64), b"x" * 64, 13, 14),
        (0, "free", (128, 64), None, 20, 30),
        (1, "allocate", (32,), 160, 25, 40),
        (1, "allocate", (8,), Raised("OutOfMemoryError"), 41, 42))),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_rejects(case):
    model, history = BAD[case]
    res = check(model, history)
    assert res.status == "fail", res
    assert "NOT LINEARIZABLE" in res.witness
    # the witness names an operation that could not come next
    assert "model:" in res.witness


@pytest.mark.parametrize("case", sorted(GOOD))
def test_accepts(case):
    model, history = GOOD[case]
    res = check(model, history)
    assert res.ok, res


def test_budget_exhausted_is_unknown_not_ok():
    # 12 overlapping pushes, then their items popped in an order only the
    # search finds: linearizable, but not within 5 steps
    history = [Op(p, "push", (bytes([p]),), None, 0, 100) for p in range(12)]
    history += [Op(20, "pop", (), bytes([p]), 200 + 10 * i, 205 + 10 * i)
                for i, p in enumerate(range(12))]
    assert check(StackModel(), history, budget=5).status == "unknown"
    assert check(StackModel(), history).ok


def test_partitions_are_independent():
    """A violation on one key is found among many keys; the report names it."""
    history = []
    t = 0
    for k in range(50):
        history.append(Op(0, "set", (f"k{k}", k), None, t, t + 5))
        history.append(Op(1, "get", (f"k{k}",), k, t + 6, t + 9))
        t += 10
    history.append(Op(2, "get", ("k7",), None, t, t + 5))
    res = check(DictModel(), history)
    assert res.status == "fail" and "partition 'k7'" in res.witness


STRUCTURES = sorted(MODELS)


@settings(max_examples=40, deadline=None)
@given(structure=st.sampled_from(STRUCTURES), seed=st.integers(0, 2**32),
       nprocs=st.integers(1, 4), hot=st.booleans())
def test_sequential_histories_are_accepted(structure, seed, nprocs, hot):
    history = run_sequential(structure, seed, nprocs=nprocs, nops=25, hot=hot)
    res = check(MODELS[structure], history)
    assert res.ok, res


def _mutate(r, rng):
    if isinstance(r, bool):
        return not r
    if isinstance(r, int):
        return r + rng.choice([1, -1, 7])
    if r is None:
        return rng.choice([0, Raised("KeyError")])
    if isinstance(r, bytes):
        return r[:-1] + b"?" if r else b"?"
    return 12345                             # a Raised


@settings(max_examples=60, deadline=None)
@given(structure=st.sampled_from(STRUCTURES), seed=st.integers(0, 2**32),
       pick=st.integers(0, 10**6), hot=st.booleans())
def test_one_changed_result_is_rejected(structure, seed, pick, hot):
    history = run_sequential(structure, seed, nprocs=3, nops=20, hot=hot)
    # an allocator may return any free offset: its results are not "the answer"
    candidates = [i for i, op in enumerate(history)
                  if not (isinstance(MODELS[structure], AllocatorModel) and op.name == "allocate")]
    i = candidates[pick % len(candidates)]
    old = history[i].result
    new = _mutate(old, random.Random(pick))
    assert new != old or type(new) is not type(old)
    history[i].result = new
    res = check(MODELS[structure], history)
    assert res.status == "fail", (history[i], res)

"""The harness must be able to fail: deliberately broken scenarios (a worker
that loses updates behind the log's back, records that deliver an item
twice, a verifier that blocks or dies) are each caught, and the rotation
that re-reads permanent state reaches every item."""
import os
import random
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import shmkit  # noqa: E402
import scenario_array  # noqa: E402
import scenario_stack  # noqa: E402
from harness import Batch, Log, Rotation, Scenario, run  # noqa: E402
from shmkit.stack import Stack  # noqa: E402


@pytest.fixture
def name():
    n = f"shmkit-torture-selftest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield n
    try:
        shmkit.unlink(n)
    except FileNotFoundError:
        pass


def _array_undoing_work(name: str, log: Log, rng: random.Random) -> None:
    """Commits adds, and takes one back without saying so: a lost update."""
    arr = shmkit.Array(name)
    while True:
        i = rng.randrange(scenario_array.LENGTH)
        log.intent(i)
        arr.add(i, 1)
        log.commit(i)
        arr.add(i, -1)


def _stack_losing_work(name: str, log: Log, rng: random.Random) -> None:
    """Pushes items, then pops them without recording it: lost items."""
    s = Stack(name)
    for seq in range(1, 21):
        log.intent(["push", log.worker, seq])
        s.push(b"%d:%d:" % (log.worker, seq))
        log.commit(["push", log.worker, seq])
    for _ in range(20):
        s.pop(None)
    while True:
        time.sleep(1)


def _stack_popping_twice_work(name: str, log: Log, rng: random.Random) -> None:
    """Records one pop twice: an item delivered twice."""
    s = Stack(name)
    log.intent(["push", log.worker, 1])
    s.push(b"%d:1:" % log.worker)
    log.commit(["push", log.worker, 1])
    log.intent(["pop"])
    w, q, _ = s.pop().split(b":", 2)
    log.commit(["popped", int(w), int(q)])
    log.commit(["popped", int(w), int(q)])
    while True:
        time.sleep(1)


def _variant(base: Scenario, **kw) -> Scenario:
    fields = dict(name=base.name + "-broken", setup=base.setup, work=base.work,
                  model=base.model, fold=base.fold, verify=base.verify,
                  crash_points=base.crash_points)
    fields.update(kw)
    return Scenario(**fields)


def test_healthy_scenario_passes(name):
    stats = run(scenario_array.SCENARIO, name, kills=3)
    assert stats["kills"] == stats["verified"] == 3


def test_lost_update_is_caught(name):
    with pytest.raises(AssertionError, match="array-broken"):
        run(_variant(scenario_array.SCENARIO, work=_array_undoing_work), name, kills=5)


def test_lost_items_are_caught(name):
    with pytest.raises(AssertionError, match="lost items"):
        run(_variant(scenario_stack.SCENARIO, work=_stack_losing_work, crash_points=()),
            name, kills=5)


def test_double_delivery_is_caught(name):
    with pytest.raises(AssertionError, match="taken twice"):
        run(_variant(scenario_stack.SCENARIO, work=_stack_popping_twice_work,
                     crash_points=()), name, kills=5)


def _array_asserting_work(name: str, log: Log, rng: random.Random) -> None:
    """A worker whose own check of a result fails."""
    arr = shmkit.Array(name)
    log.intent(0)
    assert arr.add(0, 1) == -1, "add returned the wrong old value"


def test_worker_exception_is_caught(name):
    with pytest.raises(AssertionError, match="(?s)a worker raised.*wrong old value"):
        run(_variant(scenario_array.SCENARIO, work=_array_asserting_work, crash_points=()),
            name, kills=2)


def _blocking_verify(name, model):
    time.sleep(3600)


def _dying_verify(name, model):
    os._exit(3)


def test_blocked_verification_is_caught(name):
    with pytest.raises(AssertionError, match="blocked"):
        run(_variant(scenario_array.SCENARIO, verify=_blocking_verify), name, kills=1,
            verify_timeout=1.0)


def test_dead_verifier_is_caught(name):
    with pytest.raises(AssertionError, match="died"):
        run(_variant(scenario_array.SCENARIO, verify=_dying_verify), name, kills=1)


def test_in_flight_is_the_last_intent_of_each_worker():
    b = Batch(entries=[[2, 1, "intent", "a"], [2, 2, "commit", "a"], [2, 3, "intent", "b"],
                       [3, 1, "intent", "c"], [3, 2, "commit", "c"]])
    assert b.in_flight() == [(2, "b")]


def test_rotation_reaches_every_item_and_all_at_the_end():
    r = Rotation(budget=10)
    seen = set()
    for cycle in range(30):
        new = list(range(cycle * 7, cycle * 7 + 7))
        r.advance(new, final=False)
        assert set(new) <= set(r.due)       # what became permanent: at once
        assert len(r.due) <= 10 + 7
        seen |= set(r.due)
    assert seen == set(range(30 * 7))
    r.advance([], final=True)
    assert r.due == list(range(30 * 7))

"""Torture of Stack: workers push uniquely numbered items and pop, at
random.  After each kill the stack's list is intact; every committed push is
on the stack or committed as popped exactly once, except the one item a
killed worker was popping; nothing is duplicated.

The model: the items committed as pushed and not yet popped
(``outstanding``), the items whose push was in flight (``maybe``), and how
many pops were in flight (each may have taken one item with it).  Workers
lean toward popping once the stack holds ``TARGET`` items, so the stack, and
the verification that walks it, stay bounded however long the run."""
import random

from shmkit.stack import Stack

from harness import Batch, Log, Scenario, Transfers

TARGET = 1000


def setup(name: str) -> None:
    Stack(name, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    s = Stack(name)
    seq = 0
    p_push = 0.55
    while True:
        if seq % 16 == 0:
            p_push = 0.55 if len(s) < TARGET else 0.35
        if rng.random() < p_push:
            seq += 1
            log.intent(["push", log.worker, seq])
            s.push(b"%d:%d:" % (log.worker, seq) + b"y" * (seq % 200))
            log.commit(["push", log.worker, seq])
        else:
            log.intent(["pop"])
            item = s.pop(None)
            if item is None:
                log.commit(["empty"])
            else:
                w, q, _ = item.split(b":", 2)
                log.commit(["popped", int(w), int(q)])
            if rng.random() < 0.1:
                s.peek(None)


def model() -> Transfers:
    return Transfers(put="push", take="pop", taken="popped")


def fold(m: Transfers, batch: Batch) -> Transfers:
    return m.fold(batch, lambda d: [(d[1], d[2])])


def verify(name: str, m: Transfers) -> dict:
    s = Stack(name)
    st = s.check(repair=True)       # a kill between CAS and counter update
    assert s.check()["counter"] == st["items"] == len(s)
    items = []
    while True:
        it = s.pop(None)
        if it is None:
            break
        items.append(it)
    for it in reversed(items):      # restore, same order
        s.push(it)
    ids = []
    for it in items:
        w, q, _ = it.split(b":", 2)
        ids.append((int(w), int(q)))
    lost = m.check_present(ids)
    s.close()
    return {"items_left": len(ids), "popped": m.count, "lost_in_flight": lost,
            "sum_counter_repairs": int(st["counter"] != st["items"])}


SCENARIO = Scenario("stack", setup, work, model, fold, verify,
                    crash_points=("stack.push.cas", "stack.push.count", "stack.pop.count",
                                  "stack.pop.free"))

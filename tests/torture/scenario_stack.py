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

from harness import Batch, Log, Scenario

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


def model() -> dict:
    return {"outstanding": set(), "maybe": set(), "in_flight_pops": 0, "popped": 0}


def fold(m: dict, batch: Batch) -> dict:
    # Pushes first: a worker may pop what the other pushed, and the order
    # between the two workers' records is unknown.
    for _w, _s, kind, d in batch.entries:
        if d[0] == "push" and kind == "commit":
            m["outstanding"].add((d[1], d[2]))
    for _w, d in batch.in_flight():
        if d[0] == "push":
            m["maybe"].add((d[1], d[2]))
        elif d[0] == "pop":
            m["in_flight_pops"] += 1
    for _w, _s, kind, d in batch.entries:
        if d[0] == "popped":
            it = (d[1], d[2])
            if it in m["outstanding"]:
                m["outstanding"].remove(it)
            elif it in m["maybe"]:
                m["maybe"].remove(it)
            else:
                raise AssertionError(f"item {it} popped twice, or never pushed")
            m["popped"] += 1
    return m


def verify(name: str, m: dict) -> dict:
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
    present = set(ids)
    assert len(present) == len(ids), "an item is on the stack twice"
    stray = present - m["outstanding"] - m["maybe"]
    assert not stray, f"popped or never pushed, yet on the stack: {sorted(stray)[:5]}"
    missing = m["outstanding"] - present
    assert len(missing) <= m["in_flight_pops"], f"lost items: {sorted(missing)[:5]}"
    s.close()
    return {"items_left": len(ids), "popped": m["popped"], "lost_in_flight": len(missing),
            "sum_counter_repairs": int(st["counter"] != st["items"])}


SCENARIO = Scenario("stack", setup, work, model, fold, verify,
                    crash_points=("stack.push.cas", "stack.push.count", "stack.pop.count",
                                  "stack.pop.free"))

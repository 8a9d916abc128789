"""Torture of Stack: workers push uniquely numbered items and pop, at
random.  After each kill the stack's list is intact; every committed push is
on the stack or committed as popped exactly once, except the one item a
killed worker was popping; nothing is duplicated."""
import random

from shmkit.stack import Stack

from harness import Log, Records, Scenario


def setup(name: str) -> None:
    Stack(name, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    s = Stack(name)
    seq = 0
    while True:
        if rng.random() < 0.55:
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


def verify(name: str, records: Records) -> dict:
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

    pushed, maybe, popped = set(), set(), []
    last_kind = {}
    for worker, _seq, kind, d in records.entries:
        if d[0] == "push":
            (pushed if kind == "commit" else maybe).add((d[1], d[2]))
        elif d[0] == "popped":
            popped.append((d[1], d[2]))
        last_kind[worker] = (kind, d[0])
    in_flight_pops = sum(1 for k in last_kind.values() if k == ("intent", "pop"))
    assert len(set(ids)) == len(ids), "an item is on the stack twice"
    assert len(set(popped)) == len(popped), "an item was popped twice"
    assert not (set(ids) & set(popped)), "a popped item is still on the stack"
    assert set(ids) | set(popped) <= pushed | maybe, "an item nobody pushed"
    missing = pushed - set(ids) - set(popped)
    assert len(missing) <= in_flight_pops, f"lost items: {sorted(missing)[:5]}"
    s.close()
    return {"items_left": len(ids), "popped": len(popped), "lost_in_flight": len(missing)}


SCENARIO = Scenario("stack", setup, work, verify,
                    crash_points=("stack.push.cas", "stack.push.count", "stack.pop.count",
                                  "stack.pop.free"))

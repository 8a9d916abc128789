"""Torture of Queue: every worker puts uniquely numbered items (some large
enough to go out of line) and gets items, at random.  After each kill,
every committed put must be in the queue or committed as got by exactly
one worker, except the one item a killed worker was getting; nothing is
duplicated; what is left keeps per-producer FIFO order."""
import random

from shmkit.queue import Empty, Full, Queue

from harness import Log, Records, Scenario

RING = 16384            # out of line above 2 KiB
MAXSIZE = 2000


def _item(worker: int, seq: int, big: bool) -> bytes:
    head = b"%d:%d:" % (worker, seq)
    return head + b"x" * (3000 if big else seq % 100)


def _ident(item: bytes):
    w, s, _ = item.split(b":", 2)
    return [int(w), int(s)]


def setup(name: str) -> None:
    Queue(name, maxsize=MAXSIZE, ring_bytes=RING, create=True).close()


def work(name: str, log: Log, rng: random.Random) -> None:
    q = Queue(name)
    seq = 0
    while True:
        if rng.random() < 0.55:
            seq += 1
            item = _item(log.worker, seq, rng.random() < 0.05)
            log.intent(["put", log.worker, seq])
            try:
                if rng.random() < 0.2:
                    q.put_many([item], block=False)
                else:
                    q.put_nowait(item)
            except Full:
                log.commit(["full", log.worker, seq])
                continue
            log.commit(["put", log.worker, seq])
        else:
            log.intent(["get"])
            try:
                if rng.random() < 0.2:
                    items = q.get_many(3, block=False)
                else:
                    items = [q.get_nowait()]
            except Empty:
                log.commit(["empty"])
                continue
            # one record for the batch: a kill cannot split it
            log.commit(["got", [_ident(it) for it in items]])


def verify(name: str, records: Records) -> dict:
    q = Queue(name)
    st = q.check()
    present = []
    while True:
        try:
            present.extend(q.get_many(1000, block=False))
        except Empty:
            break
    ids = [tuple(_ident(it)) for it in present]
    # put them back, in order: the queue is as it was for the next cycle
    if present:
        q.put_many(present, block=False)

    put_done, put_maybe, got = set(), set(), []
    last_kind = {}
    for worker, _seq, kind, d in records.entries:
        if d[0] == "put":
            (put_done if kind == "commit" else put_maybe).add((d[1], d[2]))
        elif d[0] == "got":
            got.extend(tuple(x) for x in d[1])
        last_kind[worker] = (kind, d[0])
    # an item a killed worker was getting (intent "get" with no commit after)
    in_flight_gets = sum(1 for k in last_kind.values() if k == ("intent", "get"))

    assert len(set(ids)) == len(ids), "an item is in the queue twice"
    assert len(set(got)) == len(got), "an item was delivered twice"
    assert not (set(ids) & set(got)), "a delivered item is still in the queue"
    known = put_done | put_maybe
    assert set(ids) <= known and set(got) <= known, "an item nobody put"
    missing = put_done - set(ids) - set(got)
    # a killed get_many takes up to 3
    assert len(missing) <= 3 * in_flight_gets, f"lost items: {sorted(missing)[:5]}"
    last = {}
    for w, s in ids:
        assert last.get(w, -1) < s, "per-producer FIFO order broken"
        last[w] = s
    q.close()
    return {"items_left": len(ids), "delivered": len(got),
            "lost_in_flight": len(missing), "recoveries": st["recoveries"]}


SCENARIO = Scenario("queue", setup, work, verify,
                    crash_points=("queue.put.commit", "queue.put.count", "queue.put.ool",
                                  "queue.get.commit", "queue.get.count", "queue.get.free"))

"""Torture of Queue: every worker puts uniquely numbered items (some large
enough to go out of line) and gets items, at random.  After each kill,
every committed put must be in the queue or committed as got by exactly
one worker, except the one item a killed worker was getting; nothing is
duplicated; what is left keeps per-producer FIFO order.

The model: the items committed as put and not yet got (``outstanding``),
the items whose put was in flight (``maybe``), and how many gets were in
flight (each may have taken up to 3 items with it: get_many(3)).  The queue
holds at most MAXSIZE items, so verification stays bounded."""
import random

from shmkit.queue import Empty, Full, Queue

from harness import Batch, Log, Scenario, Transfers

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


def model() -> Transfers:
    return Transfers(put="put", take="get", taken="got", per_take=3)  # get_many takes 3


def fold(m: Transfers, batch: Batch) -> Transfers:
    # one "got" record per batch: a kill cannot split it
    return m.fold(batch, lambda d: d[1])


def verify(name: str, m: Transfers) -> dict:
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

    lost = m.check_present(ids)
    last = {}
    for w, s in ids:
        assert last.get(w, -1) < s, "per-producer FIFO order broken"
        last[w] = s
    q.close()
    return {"items_left": len(ids), "delivered": m.count,
            "lost_in_flight": lost, "recoveries": st["recoveries"]}


SCENARIO = Scenario("queue", setup, work, model, fold, verify,
                    crash_points=("queue.put.commit", "queue.put.count", "queue.put.ool", "queue.put.wake",
                                  "queue.get.commit", "queue.get.count", "queue.get.free"))

"""Crash torture: kill workers with SIGKILL at random instants, then check
from a fresh process that the structure is intact.

A *scenario* (one per structure, in ``scenario_*.py``) provides:

* ``setup(name)``: create the structure in segment ``name``;
* ``work(name, log, rng)``: run random operations forever, calling
  ``log.intent(...)`` before and ``log.commit(...)`` after each one that
  changes state (records reach the parent through a pipe, so they survive the
  kill; what happens between the two is the in-flight operation); an
  exception it raises (e.g. an assert on a result) fails the run;
* ``model()``: the expected state of an empty structure, a plain Python
  object (the scenario's *model*);
* ``fold(model, batch)``: fold the records of one kill cycle into the model
  and return it.  ``batch.entries`` holds every record of the cycle, each
  worker's in its own order; the cycle's workers are all dead by then, so an
  operation a worker had in flight (``batch.in_flight()``: its last intent
  with no commit after it) may or may not have happened, now and forever:
  the model must keep allowing both.  ``fold`` may raise AssertionError
  (e.g. an item delivered twice) and is the place for checks that need only
  the records;
* ``verify(name, model)``: in a fresh process, open the structure, run its
  ``check()``, and assert that the structure agrees with the model, i.e.
  every committed operation is visible and nothing else happened; returns
  counters for the report (the last value of each is reported, except that
  ``sum_*`` counters are summed over the run's verifications).

Each cycle starts a victim and a bystander worker, kills the victim at a
random instant (half of the time at a named crash point inside the C code,
see SHK_CRASH_POINT), stops the bystander, folds the cycle's records into the
model, and runs ``verify`` in a fresh process under a time bound: a deadlock
shows up as a timeout.

Why a model: replaying every record so far at each check made the run
quadratic (the long run once verified only every 10th kill for that reason).
Folding costs time proportional to the new records, and each scenario keeps
``verify`` bounded: its workers keep the structure's size bounded (the stack
leans toward pops past a target size, the queue has a maxsize, the bitset
a fixed size, the dict a fixed key range plus one counter per worker), and
state that only grows (the blocks that killed workers still held, which
nobody may free) is re-read round robin (``Rotation``), all of it at the
last kill.  So every kill is verified, in
linear total time, in both modes.

Short mode (the default, run by ``make test``) does 50 kills per scenario;
``SHMKIT_TORTURE=long`` (``make torture``) does 1,000 and prints progress.
``SHMKIT_TORTURE_SEED`` (default 1) seeds the kill schedule; a failure names
the seed, the kill and the crash point armed in that cycle (the instants
themselves are timing, so a rerun finds the same class of failure, not the
same interleaving).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as _queue
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple

LONG = os.environ.get("SHMKIT_TORTURE") == "long"
KILLS = 1000 if LONG else 50
VERIFY_TIMEOUT = 60.0      # seconds; far above any healthy run (no timing asserts)
_CTX = mp.get_context("fork")


class Log:
    """Append-only record of what a worker did, written to a pipe with one
    atomic write per record (records are far below PIPE_BUF)."""

    def __init__(self, fd: int, worker: int):
        self.fd = fd
        self.worker = worker
        self.seq = 0

    def _write(self, kind: str, data: Any) -> None:
        self.seq += 1
        line = json.dumps([self.worker, self.seq, kind, data]) + "\n"
        os.write(self.fd, line.encode())

    def intent(self, data: Any) -> None:
        self._write("intent", data)

    def commit(self, data: Any) -> None:
        self._write("commit", data)


@dataclass
class Batch:
    """The records of one kill cycle: ``entries`` are ``[worker, seq, kind,
    data]``, all of one worker before the next's (a worker's own records in
    the order it wrote them; the order between workers is unknown)."""

    entries: List[list] = field(default_factory=list)
    final: bool = False         # the run's last cycle: verify everything

    def add_lines(self, blob: bytes) -> None:
        # A SIGKILL cannot tear a record (one write(2) below PIPE_BUF each).
        for line in blob.decode().splitlines():
            if line:
                self.entries.append(json.loads(line))

    def committed(self) -> List[Any]:
        return [e[3] for e in self.entries if e[2] == "commit"]

    def by_kind(self, kind: str) -> List[Any]:
        return [e[3] for e in self.entries if e[2] == kind]

    def in_flight(self) -> List[Tuple[int, Any]]:
        """(worker, data) of each worker whose last record is an intent: the
        operation it was in when it died, which may or may not have
        happened."""
        last: Dict[int, list] = {}
        for e in self.entries:
            last[e[0]] = e
        return [(w, e[3]) for w, e in last.items() if e[2] == "intent"]


class Rotation:
    """What ``verify`` re-reads of state that no live process may change any
    more (e.g. blocks a killed worker still held: nobody will ever free
    them).  Re-reading all of it at every kill would make the run quadratic
    again, so ``due`` is the state that became permanent in the last cycle
    plus the next ``budget`` older items, round robin, and everything at the
    run's last kill: each item is re-read every len/budget kills and at the
    end, so damage done to it later is still found."""

    def __init__(self, budget: int = 2000):
        self.items: List[Any] = []
        self.cursor = 0
        self.budget = budget
        self.due: List[Any] = []

    def advance(self, new: List[Any], final: bool) -> None:
        old = len(self.items)
        self.items.extend(new)
        if final or old <= self.budget:
            self.due = list(self.items)
            return
        if self.cursor >= old:
            self.cursor = 0
        window = self.items[self.cursor:min(self.cursor + self.budget, old)]
        self.cursor += self.budget
        self.due = window + list(new)


class Transfers:
    """The model of a structure that items go into and come out of once
    (queue, stack): ``outstanding`` items were put and not yet taken,
    ``maybe`` ones were put by an operation in flight when its worker died,
    and each take in flight may have removed up to ``per_take`` items."""

    def __init__(self, put: str, take: str, taken: str, per_take: int = 1):
        self.put, self.take, self.taken, self.per_take = put, take, taken, per_take
        self.outstanding: set = set()
        self.maybe: set = set()
        self.in_flight_takes = 0
        self.count = 0              # items taken, over the run

    def fold(self, batch: "Batch", taken_ids: Callable[[list], Sequence]) -> "Transfers":
        # Puts first: a worker may take what the other put, and the order
        # between the two workers' records is unknown.
        for _w, _s, kind, d in batch.entries:
            if d[0] == self.put and kind == "commit":
                self.outstanding.add((d[1], d[2]))
        for _w, d in batch.in_flight():
            if d[0] == self.put:
                self.maybe.add((d[1], d[2]))
            elif d[0] == self.take:
                self.in_flight_takes += 1
        for _w, _s, _kind, d in batch.entries:
            if d[0] != self.taken:
                continue
            for it in taken_ids(d):
                it = tuple(it)
                if it in self.outstanding:
                    self.outstanding.remove(it)
                elif it in self.maybe:
                    self.maybe.remove(it)
                else:
                    raise AssertionError(f"item {it} taken twice, or never put")
                self.count += 1
        return self

    def check_present(self, ids: Sequence[tuple]) -> int:
        """Assert what is in the structure now (``ids``) fits the model;
        returns how many outstanding items the takes in flight removed."""
        present = set(ids)
        assert len(present) == len(ids), "an item is in the structure twice"
        stray = present - self.outstanding - self.maybe
        assert not stray, f"taken or never put, yet present: {sorted(stray)[:5]}"
        missing = self.outstanding - present
        assert len(missing) <= self.per_take * self.in_flight_takes, \
            f"lost items: {sorted(missing)[:5]}"
        return len(missing)


@dataclass
class Scenario:
    name: str
    setup: Callable[[str], None]
    work: Callable[[str, Log, random.Random], None]
    model: Callable[[], Any]
    fold: Callable[[Any, Batch], Any]
    verify: Callable[[str, Any], dict]
    crash_points: Sequence[str] = ()


def _worker_main(scenario: Scenario, name: str, fd: int, worker: int, seed: int,
                 crash_point: str | None) -> None:
    from shmkit import _shmkit

    if crash_point is not None or hasattr(_shmkit, "_arm_crash_point"):
        _shmkit._arm_crash_point(crash_point)
    rng = random.Random(seed)
    log = Log(fd, worker)
    try:
        scenario.work(name, log, rng)
    except BaseException as e:  # e.g. an assert in work(): the parent fails the run
        import traceback

        log._write("error", "".join(traceback.format_exception(e))[-3000:])
    finally:
        os._exit(0)


def _start(scenario: Scenario, name: str, worker: int, seed: int,
           crash_point: str | None):
    r, w = os.pipe()
    p = _CTX.Process(target=_worker_main,
                     args=(scenario, name, w, worker, seed, crash_point), daemon=True)
    p.start()
    os.close(w)
    return p, r


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


def _verify_main(scenario: Scenario, name: str, model: Any, q) -> None:
    try:
        q.put(("ok", scenario.verify(name, model)))
    except BaseException as e:  # report every failure to the parent
        import traceback

        q.put(("fail", "".join(traceback.format_exception(e))))


def _verify(scenario: Scenario, name: str, model: Any, stats: dict, where: str,
            timeout: float) -> None:
    """Run the scenario's verify in a fresh process (forked: it inherits the
    model without pickling it), bounded in time."""
    q = _CTX.Queue()
    v = _CTX.Process(target=_verify_main, args=(scenario, name, model, q))
    v.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, detail = q.get(timeout=0.05)
            break
        except _queue.Empty:
            pass
        if not v.is_alive():
            try:        # it may have put its answer just before exiting
                status, detail = q.get(timeout=1.0)
                break
            except _queue.Empty:
                raise AssertionError(f"{scenario.name}: the verifier died (exit code "
                                     f"{v.exitcode}) {where}") from None
        if time.monotonic() > deadline:
            v.kill()
            v.join()
            raise AssertionError(f"{scenario.name}: verification blocked for "
                                 f"{timeout}s {where} (deadlock?)")
    v.join(timeout)
    q.close()
    assert status == "ok", f"{scenario.name}, {where}:\n{detail}"
    stats["verified"] += 1
    for k, v in detail.items():
        if k.startswith("sum_"):    # counted per verification, summed over the run
            stats[k] = stats.get(k, 0) + v
        elif k not in ("kills", "at_crash_point", "verified", "records"):
            stats[k] = v            # the structure's own (cumulative) counters


def run(scenario: Scenario, name: str, kills: int = KILLS, seed: int = 1,
        verify_timeout: float = VERIFY_TIMEOUT) -> dict:
    """Run `kills` kill cycles, each folded and verified; returns counters
    for the closing report."""
    if scenario.crash_points:
        from shmkit import _shmkit

        if not hasattr(_shmkit, "_arm_crash_point"):
            import pytest

            why = ("crash points need the extension built with test hooks "
                   "(SHMKIT_TEST_HOOKS=1, as `make install` does)")
            # `make pytest` sets SHMKIT_TEST_HOOKS=1: there they must run.
            if os.environ.get("SHMKIT_TEST_HOOKS") == "1":
                pytest.fail(why)
            pytest.skip(why)
    rng = random.Random(seed)
    scenario.setup(name)
    model = scenario.model()
    stats = {"kills": 0, "at_crash_point": 0, "verified": 0, "records": 0}
    worker_id = 0
    t0 = time.monotonic()
    for cycle in range(kills):
        point = None
        if scenario.crash_points and rng.random() < 0.5:
            point = f"{rng.choice(scenario.crash_points)}:{rng.randint(1, 200)}"
        worker_id += 2
        victim, vfd = _start(scenario, name, worker_id, rng.randrange(1 << 30), point)
        bystander, bfd = _start(scenario, name, worker_id + 1, rng.randrange(1 << 30), None)
        time.sleep(rng.uniform(0.002, 0.03))
        if victim.is_alive():
            os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        stats["kills"] += 1
        if victim.exitcode == -signal.SIGKILL and point is not None:
            stats["at_crash_point"] += 1
        # The bystander must still make progress after the kill: let it run
        # a little, then stop it the same way (a second kill).
        time.sleep(rng.uniform(0.001, 0.01))
        os.kill(bystander.pid, signal.SIGKILL)
        bystander.join()
        batch = Batch(final=cycle == kills - 1)
        batch.add_lines(_drain(vfd))
        batch.add_lines(_drain(bfd))
        stats["records"] += len(batch.entries)
        where = f"after kill {cycle + 1} (seed {seed}, crash point {point or 'none'})"
        errors = batch.by_kind("error")
        if errors:
            raise AssertionError(f"{scenario.name}: a worker raised, {where}:\n{errors[0]}")
        try:
            model = scenario.fold(model, batch)
        except AssertionError as e:
            raise AssertionError(f"{scenario.name}, records of the cycle {where}: {e}") from e
        _verify(scenario, name, model, stats, where, verify_timeout)
        if LONG and (cycle + 1) % 100 == 0:
            print(f"  {scenario.name}: {cycle + 1} kills verified, "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
    return stats

"""Crash torture: kill workers with SIGKILL at random instants, then check
from a fresh process that the structure is intact.

A *scenario* (one per structure, in ``scenario_*.py``) provides:

* ``setup(name)``: create the structure in segment ``name``;
* ``work(name, log, rng)``: run random operations forever, calling
  ``log.intent(...)`` before and ``log.commit(...)`` after each one that
  changes state (records reach the parent through a pipe, so they survive the
  kill; what happens between the two is the in-flight operation);
* ``verify(name, records)``: in a fresh process, open the structure, run its
  ``check()``, and assert every committed operation is visible, allowing the
  one in flight to have happened or not.

Each cycle starts a victim and a bystander worker, kills the victim at a
random instant (half of the time at a named crash point inside the C code,
see SHK_CRASH_POINT), stops the bystander, and runs ``verify`` in a fresh
process under a time bound: a deadlock shows up as a timeout.

Short mode (the default, run by ``make test``) does 50 kills per scenario,
each verified; ``SHMKIT_TORTURE=long`` (``make torture``) does 1,000,
verified after every 10th.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Sequence

LONG = os.environ.get("SHMKIT_TORTURE") == "long"
KILLS = 1000 if LONG else 50
# Verification replays every record so far, so verifying after each of 1,000
# kills would be quadratic: the long mode verifies after every 10th kill and
# the last (damage persists, so it is still found; a deadlock shows up as the
# next workers or the verifier blocking).
VERIFY_EVERY = 10 if LONG else 1
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
class Records:
    """What the parent read back from every worker of the run so far."""

    entries: List[list] = field(default_factory=list)

    def add_lines(self, blob: bytes) -> None:
        for line in blob.decode().splitlines():
            if line:
                self.entries.append(json.loads(line))

    def committed(self) -> List[Any]:
        return [e[3] for e in self.entries if e[2] == "commit"]

    def by_kind(self, kind: str) -> List[Any]:
        return [e[3] for e in self.entries if e[2] == kind]


@dataclass
class Scenario:
    name: str
    setup: Callable[[str], None]
    work: Callable[[str, Log, random.Random], None]
    verify: Callable[[str, Records], dict]
    crash_points: Sequence[str] = ()


def _worker_main(scenario: Scenario, name: str, fd: int, worker: int, seed: int,
                 crash_point: str | None) -> None:
    from shmkit import _shmkit

    _shmkit._arm_crash_point(crash_point)
    rng = random.Random(seed)
    try:
        scenario.work(name, Log(fd, worker), rng)
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


def _verify_main(scenario: Scenario, name: str, records: Records, q) -> None:
    try:
        q.put(("ok", scenario.verify(name, records)))
    except BaseException as e:  # report every failure to the parent
        import traceback

        q.put(("fail", "".join(traceback.format_exception(e))))


def _verify(scenario: Scenario, name: str, records: Records, stats: dict,
            cycle: int) -> None:
    """Run the scenario's verify in a fresh process, bounded in time."""
    q = _CTX.Queue()
    v = _CTX.Process(target=_verify_main, args=(scenario, name, records, q))
    v.start()
    try:
        status, detail = q.get(timeout=VERIFY_TIMEOUT)
    except Exception:
        v.kill()
        raise AssertionError(f"{scenario.name}: verification blocked for "
                             f"{VERIFY_TIMEOUT}s after kill {cycle + 1} (deadlock?)")
    v.join(VERIFY_TIMEOUT)
    assert status == "ok", f"{scenario.name}, after kill {cycle + 1}:\n{detail}"
    stats["verified"] += 1
    stats.update({k: v for k, v in detail.items() if k not in ("kills", "verified")})


def run(scenario: Scenario, name: str, kills: int = KILLS, seed: int = 1) -> dict:
    """Run `kills` kill cycles; returns counters for the closing report."""
    rng = random.Random(seed)
    scenario.setup(name)
    records = Records()
    stats = {"kills": 0, "at_crash_point": 0, "verified": 0}
    worker_id = 0
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
        records.add_lines(_drain(vfd))
        records.add_lines(_drain(bfd))
        if (cycle + 1) % VERIFY_EVERY == 0 or cycle == kills - 1:
            _verify(scenario, name, records, stats, cycle)
    return stats

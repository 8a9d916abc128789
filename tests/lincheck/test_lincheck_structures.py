"""Every shmkit structure, driven by many processes at once (fork and
spawn), must produce only linearizable histories.

Short mode (the default, ``make test``): a few histories per structure and
start method.  ``SHMKIT_LINCHECK=long`` (``make lincheck``): many more and
longer.  ``SHMKIT_LINCHECK_SEED`` seeds the workloads (default 1; the
interleavings are timing, so a rerun finds the same class of failure, not
the same history); ``SHMKIT_LINCHECK_PROCS`` overrides the process count
(default 8 per CPU, at most 64).

Each run appends one line per structure to ``build/lincheck-summary.txt``
(histories, operations, partitions, operations that overlapped another in
their partition, search steps) and prints it (visible under ``-s``).
"""
import os
import pathlib

import pytest

import shmkit
from lincheck_core import DEFAULT_BUDGET
from lincheck_runner import STRUCTURES, run

LONG = os.environ.get("SHMKIT_LINCHECK", "short") == "long"
SEED = int(os.environ.get("SHMKIT_LINCHECK_SEED", "1"))
PROCS = int(os.environ.get("SHMKIT_LINCHECK_PROCS", "0")) or min(64, (os.cpu_count() or 2) * 8)
# (histories, operations per process per history) for fork / spawn
SIZES = {
    False: {"fork": (6, 400), "spawn": (2, 400)},
    True: {"fork": (120, 1500), "spawn": (40, 1500)},
}
# The stack's search is exponential in the number of pushes pending at once.
# Under the chaos build every push stays pending for up to milliseconds: with
# 16 processes a history of 320 operations outgrew a 3,000,000-step budget,
# and with 8 processes 1 history in 40 of 3,000 operations outgrew 2,000,000.
# So there it runs 8 processes, an eighth as many operations per history,
# and a larger budget.
# The dict's hot keys are searched per key; under chaos a hot key's
# operations overlap almost all of one another (1 history in 120 of 1,500
# operations per process outgrew 2,000,000 steps), so its budget is larger.
# The queue's producers and consumers hold different locks, so under chaos
# puts overlap gets as well as one another (1 history in 120 of 1,500
# operations per process outgrew 2,000,000 steps): a larger budget too.
CHAOS_PROCS = {"stack": 8}
CHAOS_NOPS_DIVISOR = {"stack": 8}
CHAOS_BUDGET = {"stack": 10 * DEFAULT_BUDGET, "dict": 10 * DEFAULT_BUDGET,
                "queue": 10 * DEFAULT_BUDGET}
SUMMARY = pathlib.Path(__file__).resolve().parents[2] / "build" / "lincheck-summary.txt"
BUILD = "chaos" if "chaos" in os.path.dirname(shmkit.__file__) else "plain"


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_linearizable(structure, method):
    rounds, nops = SIZES[LONG][method]
    nprocs, budget = PROCS, DEFAULT_BUDGET
    if BUILD == "chaos":
        nprocs = min(PROCS, CHAOS_PROCS.get(structure, PROCS))
        nops //= CHAOS_NOPS_DIVISOR.get(structure, 1)
        budget = CHAOS_BUDGET.get(structure, budget)
    report = run(structure, method, nprocs=nprocs, rounds=rounds, nops=nops, seed=SEED,
                 budget=budget)
    line = report.summary(f"{BUILD}/{'long' if LONG else 'short'}")
    print("\n" + line)
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    with open(SUMMARY, "a") as f:
        f.write(line + "\n")
    assert report.failed == 0 and report.unknown == 0, (
        f"{report.failed} of {len(report.rounds)} histories not linearizable, "
        f"{report.unknown} unknown (search budget exhausted); first: {report.first_failure}")

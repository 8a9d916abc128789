"""Crash torture of every structure (see harness.py).  Each scenario module
in this folder named scenario_*.py defines SCENARIO; this test runs each."""
import importlib
import os
import pathlib
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import shmkit  # noqa: E402
from harness import KILLS, run  # noqa: E402

SCENARIOS = sorted(p.stem for p in pathlib.Path(__file__).parent.glob("scenario_*.py"))


@pytest.mark.parametrize("module", SCENARIOS)
def test_kill_at_random_instants(module, capsys):
    scenario = importlib.import_module(module).SCENARIO
    name = f"shmkit-torture-{os.getpid()}-{scenario.name}-{uuid.uuid4().hex[:8]}"
    seed = int(os.environ.get("SHMKIT_TORTURE_SEED", "1"))
    t0 = time.monotonic()
    try:
        stats = run(scenario, name, seed=seed)
    finally:
        try:
            shmkit.unlink(name)
        except FileNotFoundError:
            pass
    assert stats["kills"] == stats["verified"] == KILLS
    stats["seconds"] = round(time.monotonic() - t0, 1)
    with capsys.disabled():
        print(f"\n  torture {scenario.name}: {stats}")

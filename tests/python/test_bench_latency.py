"""The latency benchmark (shmkit bench --latency) runs end to end from the
CLI and writes what it says; its figures are not asserted (no timing
asserts), only their shape and that every round trip was counted."""
import json
import os
import subprocess
import sys

import pytest

from shmkit.bench import latency


def test_round_trips_echo_every_item():
    times, idle_cpu = latency.round_trips(latency._shmkit, 200)
    assert len(times) == 200 and all(t > 0 for t in times)
    assert idle_cpu >= 0


def test_latency_cli_tiny_run(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "shmkit", "bench", "--latency", "--trips", "200",
                        "--repeats", "1", "--out", str(out), "--no-charts"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "| shmkit.Queue |" in p.stdout
    report = json.loads((out / "latency.json").read_text())
    assert report["trips"] == 200 and report["repeats"] == 1
    labels = [r["queue"] for r in report["results"]]
    assert labels[0] == "shmkit.Queue"
    assert "multiprocessing.SimpleQueue" in labels
    for r in report["results"]:
        m = r["median_us"]
        assert 0 < m["p50"] <= m["p90"] <= m["p99"] <= m["p99.9"]
    assert not os.path.exists(out / "latency.png")


@pytest.mark.parametrize("args", [["--trips", "10"], ["--trips", "200", "--repeats", "0"]])
def test_latency_bad_options(tmp_path, args):
    p = subprocess.run([sys.executable, "-m", "shmkit", "bench", "--latency", *args,
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "--trips must be >= 100" in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1

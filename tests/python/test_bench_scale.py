"""The scaling benchmark (shmkit bench --scale) in a tiny run: well-formed
JSON, a PNG when matplotlib is there, the markdown table, the C part used
when built and skipped with the reason when not, no leftover segments, and
bad options as one-line errors.  No timing asserts."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
C_BINARY = os.path.join(ROOT, "build", "bench", "bench_scale")
SHM = "/dev/shm"


def run_cli(*args, timeout=300):
    p = subprocess.run([sys.executable, "-m", "shmkit", *args], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("with_c", [True, False])
def test_scale_tiny_run(tmp_path, with_c):
    if with_c and not os.access(C_BINARY, os.X_OK):
        pytest.skip("build/bench/bench_scale is not built (make build/bench/bench_scale)")
    before = set(os.listdir(SHM))
    c_bin = C_BINARY if with_c else str(tmp_path / "no-such-binary")
    rc, out, err = run_cli("bench", "--scale", "--procs", "1,2", "--seconds", "0.02",
                           "--repeats", "1", "--only", "counter-add,py-one-counter",
                           "--c-binary", c_bin, "--out", str(tmp_path))
    assert rc == 0, err
    with open(tmp_path / "scale.json") as f:
        report = json.load(f)
    assert report["kind"] == "scale" and report["procs"] == [1, 2]
    assert report["machine"]["cpus_usable"] >= 1
    rs = report["results"]
    py = [r for r in rs if r["lang"] == "Python"]
    assert {r["impl"] for r in py} == {"shmkit Counter", "shmkit Array.add",
                                        "multiprocessing.Value"}
    for r in py:
        assert r["nproc"] in (1, 2) and r["ops_per_s"] > 0 and len(r["runs"]) == 1
    c = [r for r in rs if r["lang"] == "C"]
    if with_c:
        assert report["c_skipped"] is None
        assert [(r["workload"], r["nproc"]) for r in c] == [("counter-add", 1), ("counter-add", 2)]
        assert all(r["ops_per_s"] > 0 for r in c)
    else:
        assert c == [] and "failed" in report["c_skipped"]
    try:
        import matplotlib  # noqa: F401
        with open(tmp_path / "scale.png", "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert not (tmp_path / "scale.png").exists()
    # the markdown table of docs/BENCHMARKS.md
    p = subprocess.run([sys.executable, "-m", "shmkit.bench.scale", "--table",
                        str(tmp_path / "scale.json")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("| workload | implementation | N=1 | N=2 |")
    assert any("| shmkit Counter |" in line for line in lines)
    leftovers = {n for n in set(os.listdir(SHM)) - before if n.startswith("shk")}
    assert not leftovers


@pytest.mark.parametrize("args, msg", [
    (["--procs", "1,x"], "process counts must be integers"),
    (["--procs", "0"], "between 1 and 256"),
    (["--seconds", "0"], "--seconds must be > 0"),
])
def test_scale_bad_options(tmp_path, args, msg):
    rc, out, err = run_cli("bench", "--scale", *args, "--out", str(tmp_path))
    assert rc == 1 and msg in err and err.count("\n") == 1, err

"""The ``shmkit`` command line, with real segments and real processes, and the
benchmark harness in tiny mode (well-formed JSON and PNG; no timing asserts).

The CLI runs as a subprocess (``python -m shmkit ...``) so exit codes, stdout
and stderr are the real ones, and the test process's own mappings count as
"someone maps it" exactly as another program's would.
"""
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import uuid

import pytest

import shmkit
from shmkit import cli

SHM = "/dev/shm"
CONTEXTS = ["fork", "spawn"]


def run_cli(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "shmkit", *args], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# Tests touch only their own segments: other programs (or other test runs on a
# shared machine) may have stale segments of their own at the same moment.
MINE = f"shmkit-test-{os.getpid()}-*"


def ls_json():
    rc, out, err = run_cli("ls", MINE, "--json")
    assert rc == 0, err
    return {s["name"]: s for s in json.loads(out)}


@pytest.fixture
def names():
    """Unique segment names; whatever is left is unlinked at teardown."""
    made = []

    def make(tag="seg"):
        name = f"shmkit-test-{os.getpid()}-{uuid.uuid4().hex[:8]}-{tag}"
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            os.unlink(os.path.join(SHM, name))
        except OSError:
            pass


# ---------------------------------------------------------------- helpers run in children


def _create_and_wait(name, ready):
    seg = shmkit.Segment(name, create=True)
    heap = seg.allocator("heap", capacity=1 << 16)
    heap.write(heap.allocate(64), b"left behind")
    ready.set()
    signal.pause()  # until SIGKILL


def _spawn_creator(ctx_name, name):
    ctx = mp.get_context(ctx_name)
    ready = ctx.Event()
    p = ctx.Process(target=_create_and_wait, args=(name, ready))
    p.start()
    assert ready.wait(60), "child did not create its segment"
    return p


def _kill(p):
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL


# ---------------------------------------------------------------- ls / stale


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_segment_of_killed_creator_is_found_by_ls_and_removed_by_rm_stale(ctx_name, names):
    stale = names("stale")
    orphan = names("orphan")
    live = names("live")
    p1 = _spawn_creator(ctx_name, stale)
    p2 = _spawn_creator(ctx_name, orphan)
    try:
        segs = ls_json()
        assert segs[stale]["status"] == "live"
        assert segs[stale]["creator_pid"] == p1.pid
    finally:
        _kill(p1)
    held = shmkit.Segment(orphan, create=False)  # this process keeps it mapped
    _kill(p2)
    mine = shmkit.Segment(live, create=True)
    try:
        segs = ls_json()
        assert segs[stale]["status"] == "stale"
        assert segs[stale]["creator_alive"] is False
        assert [o["name"] for o in segs[stale]["objects"]] == ["heap"]
        assert segs[orphan]["status"] == "orphan"
        assert os.getpid() in segs[orphan]["mapped_by"]
        assert segs[live]["status"] == "live"

        rc, out, err = run_cli("ls")
        assert rc == 0 and stale in out and "stale" in out

        rc, out, err = run_cli("rm", "--stale", "--match", MINE, "--dry-run")
        assert rc == 0 and stale in out
        assert os.path.exists(os.path.join(SHM, stale))

        rc, out, err = run_cli("rm", "--stale", "--match", MINE)
        assert rc == 0, err
        assert f"removed {stale}" in out
        assert not os.path.exists(os.path.join(SHM, stale))
        # still in use, or creator alive: kept
        assert os.path.exists(os.path.join(SHM, orphan))
        assert os.path.exists(os.path.join(SHM, live))
        assert held.info()["objects"][0]["name"] == "heap"  # the mapping still works
    finally:
        held.close()
        mine.close()


def test_orphan_becomes_stale_once_unmapped(names):
    name = names("orphan2")
    p = _spawn_creator("fork", name)
    held = shmkit.Segment(name, create=False)
    _kill(p)
    assert ls_json()[name]["status"] == "orphan"
    held.close()
    assert ls_json()[name]["status"] == "stale"
    rc, out, err = run_cli("rm", "--stale", "--match", MINE)
    assert rc == 0 and not os.path.exists(os.path.join(SHM, name))


def test_foreign_files_are_skipped_not_crashed_on(names):
    junk = names("foreign")
    empty = names("empty")
    fake = names("fake")  # our magic, then garbage: attach must reject it
    with open(os.path.join(SHM, junk), "wb") as f:
        f.write(os.urandom(8192))
    with open(os.path.join(SHM, fake), "wb") as f:
        f.write(cli.SEGMENT_MAGIC + b"\xff" * 16384)
    open(os.path.join(SHM, empty), "wb").close()
    ours = names("ours")
    with shmkit.Segment(ours, create=True):
        rc, out, err = run_cli("ls")
        assert rc == 0, err
        assert ours in out
        assert junk not in out and empty not in out and fake not in out
        assert junk not in ls_json()
    rc, out, err = run_cli("inspect", fake)
    assert rc == 1 and "not a valid shmkit segment" in err

    rc, out, err = run_cli("inspect", junk)
    assert rc == 1
    assert err.count("\n") == 1 and "not a valid shmkit segment" in err

    # rm refuses what is not ours unless forced; --stale never touches it
    rc, out, err = run_cli("rm", junk)
    assert rc == 1 and "not a shmkit segment" in err and err.count("\n") == 1
    rc, out, err = run_cli("rm", "--stale", "--match", MINE)
    assert rc == 0
    assert os.path.exists(os.path.join(SHM, junk))
    rc, out, err = run_cli("rm", "--force", junk)
    assert rc == 0 and not os.path.exists(os.path.join(SHM, junk))


def test_creator_start_ticks_is_field_22_of_proc_stat(names):
    with shmkit.Segment(names(), create=True) as seg:
        info = seg.info()
    assert info["creator_pid"] == os.getpid()
    assert info["creator_start_ticks"] == cli._proc_start_ticks(os.getpid())
    assert info["creator_start_ticks"] > 0


def test_reused_pid_does_not_count_as_creator():
    me = os.getpid()
    ticks = cli._proc_start_ticks(me)
    assert cli.creator_alive(me, ticks)
    # same pid, another start time: a recycled pid, not the creator
    assert not cli.creator_alive(me, ticks + 1)
    assert not cli.creator_alive(0, 0)


def test_zombie_creator_counts_as_gone():
    import time

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # once it exits, and until we reap it, it is a zombie
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.01)
        assert state == "Z", "child never exited"
        assert cli._proc_start_ticks(p.pid) is None
        assert not cli.creator_alive(p.pid, 0)
    finally:
        p.wait()


# ---------------------------------------------------------------- inspect / rm


def test_inspect_segment_and_object(names):
    name = names()
    with shmkit.Segment(name, create=True) as seg:
        heap = seg.allocator("heap", capacity=1 << 16)
        heap.allocate(100)
        rc, out, err = run_cli("inspect", name)
        assert rc == 0, err
        assert "heap_used" in out and "object heap (freelist)" in out

        rc, out, err = run_cli("inspect", name, "--json")
        assert rc == 0, err
        info = json.loads(out)
        assert info["name"] == name
        assert info["creator_alive"] is True
        assert 0 <= info["heap_fragmentation"] <= 1
        (obj,) = info["objects"]
        assert obj["name"] == "heap" and obj["type"] == "freelist"
        assert obj["stats"]["capacity"] == 1 << 16

        rc, out, err = run_cli("inspect", name, "heap", "--json", "--check")
        assert rc == 0, err
        obj = json.loads(out)
        assert obj["check"]["ok"] is True and obj["segment"] == name

        rc, out, err = run_cli("inspect", name, "--check")
        assert rc == 0 and "check: ok" in out

        rc, out, err = run_cli("inspect", name, "nosuchobject")
        assert rc == 1 and "no object named 'nosuchobject'" in err
        heap.close()


def test_inspect_check_fails_on_a_damaged_object(names):
    name = names("damaged")
    with shmkit.Segment(name, create=True) as seg:
        heap = seg.allocator("heap", capacity=1 << 16)
        heap.allocate(64)
        heap.close()
        off = seg.lookup("heap")["offset"]
    # smash the allocator's shared header (its magic and sizes)
    with open(os.path.join(SHM, name), "r+b") as f:
        f.seek(off)
        f.write(b"\xa5" * 64)
    rc, out, err = run_cli("inspect", name, "--check")
    assert rc == 1
    assert "check: FAILED" in out
    assert err.startswith("shmkit: inspect: check failed") and err.count("\n") == 1
    rc, out, err = run_cli("inspect", name, "--json")  # without --check: still readable
    assert rc == 0 and "error" in json.loads(out)["objects"][0]
    assert name in ls_json()  # ls still lists the segment


def test_ls_and_inspect_show_entries_of_dicts_and_queues(names):
    pytest.importorskip("shmkit.dict")
    pytest.importorskip("shmkit.queue")
    name = names("structs")
    with shmkit.Segment(name, create=True) as seg:
        d = seg.dict("cache")
        d.update({"a": 1, "b": "two", "c": b"three"})
        q = seg.queue("jobs", maxsize=8)
        q.put(b"x")
        q.put(b"y")
        rc, out, err = run_cli("ls", MINE)
        assert rc == 0, err
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert "dict:cache(3)" in line and "queue:jobs(2)" in line
        rc, out, err = run_cli("inspect", name, "cache", "--json", "--check")
        assert rc == 0, err
        info = json.loads(out)
        assert info["entries"] == 3 and info["check"]["ok"] is True
        assert info["stats"]["entries"] == 3
        d.close()
        q.close()


def test_rm_by_name_and_missing_names(names):
    a, b = names("a"), names("b")
    shmkit.Segment(a, create=True).close()
    shmkit.Segment(b, create=True).close()
    missing = names("missing")
    rc, out, err = run_cli("rm", a, missing, b)
    assert rc == 1  # one name failed, the others were still removed
    assert f"no segment named {missing!r}" in err and err.count("\n") == 1
    assert f"removed {a}" in out and f"removed {b}" in out
    assert not os.path.exists(os.path.join(SHM, a))
    assert not os.path.exists(os.path.join(SHM, b))


def test_usage_errors_exit_2_with_one_line():
    for args in (["bogus"], ["inspect"], ["ls", "--nope"], []):
        rc, out, err = run_cli(*args)
        assert rc == 2, args
        if args:
            assert err.count("\n") == 1 and err.startswith("shmkit"), err
    rc, out, err = run_cli("rm")
    assert rc == 1 and "nothing to remove" in err
    rc, out, err = run_cli("rm", "--stale", "x")
    assert rc == 1
    rc, out, err = run_cli("rm", "--match", "x*")
    assert rc == 1 and "--match only goes with --stale" in err


@pytest.mark.parametrize("cmd", [[], ["ls"], ["inspect"], ["rm"], ["bench"]])
def test_help_for_every_command(cmd):
    rc, out, err = run_cli(*cmd, "--help")
    assert rc == 0 and "usage: shmkit" in out and len(out) > 100


def test_main_in_process(names, capsys):
    name = names()
    with shmkit.Segment(name, create=True):
        assert cli.main(["ls", MINE]) == 0
        assert name in capsys.readouterr().out
        assert cli.main(["ls", "no-such-name-*"]) == 0
        assert "no shmkit segments" in capsys.readouterr().out
    assert cli.main(["rm", name]) == 0
    assert cli.main(["inspect", name]) == 1
    assert "no segment named" in capsys.readouterr().err


# ---------------------------------------------------------------- bench, tiny mode


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OURS_OR_STDLIB = ("shmkit", "dict (no sharing)", "Manager().dict()", "multiprocessing.")


def _check_report(report):
    assert report["schema"] == "shmkit-bench/1"
    assert report["mode"] == "tiny"
    assert set(report["machine"]) >= {"cpu", "cpus_usable", "python", "platform"}
    assert "shmkit" in report["versions"]
    assert report["results"], "no case ran"
    suites = {r["suite"] for r in report["results"]}
    assert suites == {"alloc", "dict", "queue", "redis"}
    for r in report["results"]:
        assert r["status"] in ("ok", "skipped", "error"), r
        if r["status"] == "ok":
            assert r["ops_per_s"] > 0 and len(r["runs"]) >= 1
            if "shmkit_speedup" in r:
                assert r["shmkit_speedup"] > 0
        else:
            assert r["reason"]
        if r["impl"].startswith(OURS_OR_STDLIB):
            # peers may be broken; shmkit and the stdlib baselines may not
            assert r["status"] != "error", r
    ok = {r["impl"] for r in report["results"] if r["status"] == "ok"}
    assert "shmkit freelist" in ok and "multiprocessing.Queue" in ok


def test_bench_tiny_writes_json_and_png(tmp_path):
    rc, out, err = run_cli("bench", "--tiny", "--out", str(tmp_path), "--no-progress",
                           timeout=600)
    assert rc == 0, err
    assert "shmkit is" in out  # the table
    with open(tmp_path / "results.json") as f:
        report = json.load(f)
    _check_report(report)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert report["charts"] == []
        return
    assert report["charts"], "no chart written"
    for path in report["charts"]:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert os.path.getsize(path) > 1000


def test_bench_harness_leaves_no_segments(tmp_path):
    from shmkit.bench import harness

    before = set(os.listdir(SHM))
    report = harness.run(mode="tiny", out_dir=None, suites=["alloc", "queue"],
                         charts=False, progress=False, print_table=False)
    assert {r["suite"] for r in report["results"]} == {"alloc", "queue"}
    leftovers = {p for p in set(os.listdir(SHM)) - before if harness.PREFIX in p}
    assert not leftovers


def test_bench_unwritable_out_dir_fails_at_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc, out, err = run_cli("bench", "--tiny", "--out", str(blocker / "sub"))
    assert rc == 1 and "cannot write results" in err and err.count("\n") == 1


def test_bench_unknown_suite_is_an_error():
    rc, out, err = run_cli("bench", "--tiny", "--suite", "nope", "--out", "/nonexistent")
    assert rc == 1 and "unknown suite 'nope'" in err


def test_targets_are_evaluated_not_asserted():
    from shmkit.bench.harness import evaluate_targets

    results = [
        {"chart": "c", "group": "g", "impl": "shmkit", "status": "ok", "ops_per_s": 10.0},
        {"chart": "c", "group": "g", "impl": "peer", "status": "ok", "ops_per_s": 4.0},
    ]
    targets = [
        {"label": "min met", "of": ("c", "g", "shmkit"), "min": 5},
        {"label": "min missed", "of": ("c", "g", "shmkit"), "min": 50},
        {"label": "factor met", "of": ("c", "g", "shmkit"), "over": ("c", "g", "peer"), "factor": 2},
        {"label": "factor missed", "of": ("c", "g", "shmkit"), "over": ("c", "g", "peer"),
         "factor": 3},
        {"label": "not run", "of": ("c", "g", "absent"), "min": 1},
    ]
    met = {t["target"]: t["met"] for t in evaluate_targets(results, targets)}
    assert met == {"min met": True, "min missed": False, "factor met": True,
                   "factor missed": False, "not run": None}


def test_scaling_baseline_reports_the_runs_paired_with_the_two_process_runs(monkeypatch):
    # The 1-process baseline of a scaling target is measured inside each
    # repeat of the 2-process case (alternating), and its own case reports
    # those runs in order instead of measuring minutes later.
    from shmkit.bench import suite_dict

    calls = []

    def fake_processes(op, n):
        def rate(fx, budget):
            calls.append(n)
            return 100.0 * n + len(calls), 1.0
        return rate

    monkeypatch.setattr(suite_dict, "_processes", fake_processes)
    rate_two, rate_one = suite_dict._scaling_pair("set")
    fx = type("Fx", (), {"baseline_runs": {}})()
    assert [rate_two(fx, 0.1)[0] for _ in range(3)] == [202.0, 204.0, 206.0]
    assert calls == [1, 2, 1, 2, 1, 2]
    assert [rate_one(fx, 0.1)[0] for _ in range(3)] == [101.0, 103.0, 105.0]
    assert rate_one(fx, 0.1)[0] == 107.0          # none left: measures anew
    assert calls[-1] == 1


def test_inspect_reports_a_truncated_segment(names):
    name = names("truncated")
    with shmkit.Segment(name, create=True, size=4 << 20) as seg:
        seg.dict("d")["k"] = b"v" * 1000
    os.truncate(os.path.join(SHM, name), 1 << 20)
    rc, out, err = run_cli("inspect", name)
    assert rc == 1
    assert "truncated" in err and str(1 << 20) in err and "recreate" in err
    assert err.count("\n") == 1

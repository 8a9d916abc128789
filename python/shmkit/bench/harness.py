"""The benchmark harness behind ``shmkit bench`` and ``benchmarks/bench_*.py``.

Why it lives inside the package (``shmkit.bench``) and not only in
``benchmarks/``: ``shmkit bench`` must work from an installed shmkit, where the
repository's ``benchmarks/`` folder does not exist.  The scripts in
``benchmarks/`` are thin entry points onto these modules.

Model
-----
A suite module (``alloc``, ``dict``, ``queue``) yields ``Case`` objects: one
implementation (shmkit, a stdlib baseline or a peer package) doing one
operation.  Collecting the cases is cheap (no setup), so the harness knows the
total for its progress indicator before running anything.  Cases share
*fixtures* (a created dict, a Manager, ...) by key: a fixture is built lazily
before its first case and torn down after its last one, so peers are set up
once per value type, not once per operation.

Two kinds of measurement:

* ``loop`` cases give ``run(fixture, n) -> seconds`` that times ``n``
  operations (setup and cleanup inside ``run`` are outside the timed part).
  The harness doubles ``n`` until one call lasts ``budget`` seconds, then
  takes the median ops/s of ``repeats`` calls.
* ``rate`` cases (more than one process) give ``rate(fixture, budget) ->
  (ops, seconds)``; the harness takes the median of ``repeats`` calls.

Medians, not means: this machine has 2 cores shared with other work, and a
median of repeats shrugs off the runs a neighbour disturbed.  The harness
never asserts on a number: tests run it in ``tiny`` mode only to check that it
produces well-formed JSON and PNGs.

Peers that are not installed, or fail to import, are skipped and reported with
the reason (``install_peers.py`` leaves the reason of an install failure in
``<venv>/shmkit-peers.json``, which is quoted when present).  A case that
raises is recorded as an error with the message, and the run goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import glob
import importlib
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import _shmkit

SUITES = ("alloc", "dict", "queue", "redis")

# budget: seconds one timed call should last; repeats: calls per case.
MODES: Dict[str, Dict[str, Any]] = {
    "tiny": {"budget": 0.002, "repeats": 1, "max_n": 64, "case_timeout": 60},
    "quick": {"budget": 0.02, "repeats": 3, "max_n": 1 << 22, "case_timeout": 10},
    "full": {"budget": 0.15, "repeats": 5, "max_n": 1 << 26, "case_timeout": 120},
}

# Every shm name the harness or a peer creates starts with this, so that
# leftovers of a crashed peer can be found and removed.
PREFIX = f"shkb{os.getpid()}x"

# import name -> PyPI name of the packages measured against.
PEERS = {
    "shared_allocator": "shared-allocator",
    "shared_hashmap": "shared-hashmap",
    "zero_copy_ipc": "zero-copy-ipc",
    "sharedbox": "sharedbox",
    "UltraDict": "UltraDict",
    "shared_memory_dict": "shared-memory-dict",
    "faster_fifo": "faster-fifo",
}


class Skip(Exception):
    """Raised by a fixture or case that cannot run here (reason = message)."""


@dataclasses.dataclass
class Case:
    suite: str
    chart: str          # one PNG per chart: cases of a chart share an x axis
    group: str          # the x position (operation); bars = impls
    impl: str           # "shmkit", "dict", "Manager().dict()", a peer...
    unit: str = "ops/s"
    fixture: Optional[Tuple] = None           # key shared by cases
    make_fixture: Optional[Callable[[], Any]] = None
    run: Optional[Callable[[Any, int], float]] = None            # loop case
    rate: Optional[Callable[[Any, float], Tuple[float, float]]] = None  # rate case
    requires: Sequence[str] = ()              # import names (peers, numpy)
    max_n: Optional[int] = None               # cap on n for loop cases
    baseline: bool = False                    # the shmkit row ratios refer to
    budget_scale: float = 1.0                 # multi-process cases need longer runs
    min_repeats: int = 0                      # at least this many (noisy ratios)


class Fixture:
    """A set-up object with a close(); subclasses or plain wrappers."""

    def __init__(self, obj: Any, close: Optional[Callable[[], None]] = None):
        self.obj = obj
        self._close = close

    def close(self) -> None:
        if self._close is not None:
            fn, self._close = self._close, None
            fn()


_name_counter = [0]


def close_then_unlink(obj: Any, name: str) -> Callable[[], None]:
    """The teardown of a shmkit fixture: close the handle, then remove the
    segment ``name``."""
    def close() -> None:
        try:
            obj.close()
        finally:
            _shmkit.unlink(name)
    return close


def unlink_then_close(obj: Any) -> Callable[[], None]:
    """The teardown of a peer (UltraDict) whose ``unlink`` must come first
    and whose ``close`` may raise once unlinked."""
    def close() -> None:
        try:
            obj.unlink()
        finally:
            with contextlib.suppress(Exception):
                obj.close()
    return close


def shm_name(tag: str) -> str:
    """A fresh segment/peer name for this run (short: some peers limit it)."""
    _name_counter[0] += 1
    return f"{PREFIX}{_name_counter[0]}{tag}"


def cleanup_leftovers() -> List[str]:
    """Remove every shm object and peer lock file this run left behind."""
    removed = []
    for pattern in (f"/dev/shm/*{PREFIX}*", f"/tmp/zero_copy_ipc_*{PREFIX}*"):
        for path in glob.glob(pattern):
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


# ------------------------------------------------------------------ processes


def fork_workers(targets: Sequence[Callable], budget: float) -> List[Any]:
    """Fork one process per ``target(budget, conn, go)``, wait until every
    one has sent "ready" (its setup done), release them together, and return
    what each sent next.  A worker that reports ``("error", msg)``, or does
    not answer, raises RuntimeError; workers never outlive the call.

    fork, not spawn: workers inherit the parent's objects (stdlib queues
    cannot be reopened by name) and start in milliseconds."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    go = ctx.Event()
    procs, conns = [], []

    # One core each (when there are enough): "2 processes on 2 cores" is
    # what the scaling targets mean, and a worker the scheduler moves to the
    # other core takes its cache with it, or shares a core for a while.
    # Applies to every implementation alike.
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = len(cpus) >= len(targets)

    def wrap(target, conn, i):
        try:
            if pin:
                os.sched_setaffinity(0, {cpus[i]})
            target(budget, conn, go)
        except BaseException as e:  # report, never hang the parent
            try:
                conn.send(("error", f"{type(e).__name__}: {e}"))
            except Exception:
                pass
        finally:
            try:
                conn.close()
            finally:
                os._exit(0)

    try:
        for i, target in enumerate(targets):
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=wrap, args=(target, child, i), daemon=True)
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        for c in conns:
            if not c.poll(60):
                raise RuntimeError("a worker did not start")
            msg = c.recv()
            if msg != "ready":
                raise RuntimeError(msg[1] if isinstance(msg, tuple) else str(msg))
        go.set()
        out = []
        for c in conns:
            if not c.poll(max(60.0, budget * 20)):
                raise RuntimeError("a worker did not finish")
            msg = c.recv()
            if isinstance(msg, tuple) and msg and msg[0] == "error":
                raise RuntimeError(msg[1])
            out.append(msg)
        return out
    finally:
        for c in conns:
            c.close()
        for p in procs:
            p.join(2)
            if p.is_alive():
                p.kill()
                p.join()


# ------------------------------------------------------------------ peers


def install_log() -> Dict[str, Any]:
    """What benchmarks/install_peers.py recorded in this environment:
    {"installed": [...], "failed": {pypi: reason}, "notes": {req: note}}."""
    path = os.path.join(sys.prefix, "shmkit-peers.json")
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _install_report() -> Dict[str, str]:
    failed = install_log().get("failed", {})
    return dict(failed) if isinstance(failed, dict) else {}


def check_import(module: str) -> Optional[str]:
    """None if ``module`` imports, else the reason it cannot be used."""
    try:
        importlib.import_module(module)
        return None
    except Exception as e:  # ImportError, or a broken peer raising anything
        pypi = PEERS.get(module, module)
        failed = _install_report().get(pypi)
        if failed:
            return f"{pypi} did not install: {failed}"
        if isinstance(e, ModuleNotFoundError) and e.name == module:
            return f"{pypi} is not installed (pip install {pypi})"
        return f"{pypi} failed to import: {type(e).__name__}: {e}"


def package_version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 1
    return {
        "cpu": cpu,
        "cpus_usable": ncpu,
        "memory_bytes": mem,
        "platform": platform.platform(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }


def versions() -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {"shmkit": package_version("shmkit")}
    try:
        import shmkit
        out["shmkit_c"] = getattr(shmkit, "__version__", None)
    except Exception:
        pass
    for _mod, dist in list(PEERS.items()) + [("numpy", "numpy"), ("matplotlib", "matplotlib")]:
        out[dist] = package_version(dist)
    return out


# ------------------------------------------------------------------ progress


class Progress:
    """A one-line progress bar on stderr when it is a terminal, else a line
    every ~10 %: the quick run must show it is alive without flooding logs."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._last_decile = -1

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        pct = self.done * 100 // self.total
        if self.tty:
            width = 24
            filled = width * self.done // self.total
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r[{bar}] {self.done:3d}/{self.total} {label}"[:110]
            sys.stderr.write(line.ljust(110))
            sys.stderr.flush()
        elif pct // 10 != self._last_decile:
            self._last_decile = pct // 10
            sys.stderr.write(f"bench: {pct:3d}% ({self.done}/{self.total}) "
                             f"{time.monotonic() - self.t0:5.1f}s {label}\n")
            sys.stderr.flush()
        self.done += 1

    def finish(self) -> None:
        if not self.enabled:
            return
        msg = f"{self.total}/{self.total} cases in {time.monotonic() - self.t0:.1f}s"
        if self.tty:
            sys.stderr.write("\r" + f"[{'#' * 24}] {msg}".ljust(110) + "\n")
        else:
            sys.stderr.write(f"bench: 100% {msg}\n")
        sys.stderr.flush()


# ------------------------------------------------------------------ measuring


def measure_loop(case: Case, fx: Any, budget: float, repeats: int, max_n: int) -> List[float]:
    cap = min(max_n, case.max_n or max_n)
    n = 1
    run = case.run
    assert run is not None, "a loop case has run="
    # calibrate: double n until one timed call lasts the budget
    while True:
        t = run(fx, n)
        if t >= budget or n >= cap:
            break
        # jump straight to the likely n once we have a usable reading
        if t > budget / 64:
            n = min(cap, max(n * 2, int(n * budget / t * 1.1)))
        else:
            n = min(cap, n * 4)
    rates = []
    for _ in range(repeats):
        # a capped n may run shorter than the budget: sum several calls
        ops, elapsed = 0, 0.0
        while True:
            elapsed += run(fx, n)
            ops += n
            if elapsed >= budget or n < cap or ops >= cap * 64:
                break
        rates.append(ops / elapsed if elapsed > 0 else float("inf"))
    return rates


def measure_rate(case: Case, fx: Any, budget: float, repeats: int) -> List[float]:
    rate = case.rate
    assert rate is not None, "a rate case has rate="
    rates = []
    for _ in range(repeats):
        ops, elapsed = rate(fx, budget)
        rates.append(ops / elapsed if elapsed > 0 else float("inf"))
    return rates


class CaseTimeout(Exception):
    """A case (or a fixture's setup) ran past the mode's case_timeout."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Abort a case that hangs (a peer waiting on a lock forever) with
    CaseTimeout, via SIGALRM; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise CaseTimeout(f"case took longer than {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class QuietPeers:
    """Swallow (and count) "Exception ignored in __del__" reports while the
    peers run: several peers' destructors raise on close (atomics views,
    SharedMemory with exported buffers), which would bury the table in
    tracebacks without telling the reader anything about speed."""

    count = 0

    def __init__(self, permanent: bool = False):
        self.permanent = permanent

    @classmethod
    def hook(cls, unraisable) -> None:
        cls.count += 1

    def __enter__(self):
        self.old = sys.unraisablehook
        sys.unraisablehook = self.hook
        return self

    def __exit__(self, *exc):
        if not self.permanent:
            sys.unraisablehook = self.old


def run_cases(cases: List[Case], mode: str, progress: bool = True) -> Tuple[List[Dict], Dict[str, str]]:
    params = MODES[mode]
    budget, repeats, max_n = params["budget"], params["repeats"], params["max_n"]
    last_use: Dict[Tuple, int] = {}
    for i, c in enumerate(cases):
        if c.fixture is not None:
            last_use[c.fixture] = i
    fixtures: Dict[Tuple, Any] = {}
    fixture_errors: Dict[Tuple, str] = {}
    import_errors: Dict[str, Optional[str]] = {}
    skipped: Dict[str, str] = {}
    results: List[Dict] = []
    bar = Progress(len(cases), progress)
    try:
        for i, c in enumerate(cases):
            bar.step(f"{c.suite}: {c.group} [{c.impl}]")
            t_case = time.monotonic()
            res: Dict[str, Any] = {
                "suite": c.suite, "chart": c.chart, "group": c.group, "impl": c.impl,
                "unit": c.unit, "baseline": c.baseline, "status": "ok",
            }
            try:
                for mod in c.requires:
                    if mod not in import_errors:
                        import_errors[mod] = check_import(mod)
                    reason = import_errors[mod]
                    if reason:
                        skipped.setdefault(PEERS.get(mod, mod), reason)
                        raise Skip(reason)
                fx = None
                if c.fixture is not None:
                    if c.fixture in fixture_errors:
                        raise Skip(fixture_errors[c.fixture])
                    if c.fixture not in fixtures:
                        assert c.make_fixture is not None, "a case with fixture= has make_fixture="
                        try:
                            with _time_limit(params["case_timeout"]):
                                fixtures[c.fixture] = c.make_fixture()
                        except Skip as e:
                            fixture_errors[c.fixture] = str(e)
                            raise
                        except Exception as e:  # CaseTimeout included
                            fixture_errors[c.fixture] = f"setup failed: {type(e).__name__}: {e}"
                            raise Skip(fixture_errors[c.fixture]) from None
                    fx = fixtures[c.fixture]
                gc.collect()
                gc.disable()  # a collection inside a timed loop is noise
                try:
                    with _time_limit(params["case_timeout"]):
                        b = budget * c.budget_scale
                        reps = max(repeats, c.min_repeats) if repeats > 1 else repeats
                        if c.rate is not None:
                            rates = measure_rate(c, fx, b, reps)
                        else:
                            rates = measure_loop(c, fx, b, reps, max_n)
                finally:
                    gc.enable()
                res["ops_per_s"] = statistics.median(rates)
                res["runs"] = rates
            except Skip as e:
                res["status"] = "skipped"
                res["reason"] = str(e)
                if not any(str(e) == v for v in skipped.values()):
                    skipped.setdefault(f"{c.impl} ({c.suite})", str(e))
            except Exception as e:
                res["status"] = "error"
                res["reason"] = f"{type(e).__name__}: {e}"[:300]
                if isinstance(e, CaseTimeout) and c.fixture in fixtures:
                    # a peer stuck once (a lock held by the interrupted
                    # call) would likely stick again: drop its fixture
                    fixture_errors[c.fixture] = "an earlier case on the same setup timed out"
                    try:
                        fixtures.pop(c.fixture).close()
                    except Exception:
                        pass
            res["wall_s"] = round(time.monotonic() - t_case, 3)
            results.append(res)
            # tear down fixtures nobody needs any more
            if c.fixture is not None and last_use.get(c.fixture) == i and c.fixture in fixtures:
                try:
                    fixtures.pop(c.fixture).close()
                except Exception:
                    pass
    finally:
        for fx in fixtures.values():
            try:
                fx.close()
            except Exception:
                pass
        cleanup_leftovers()
        bar.finish()
    _add_ratios(results)
    return results, skipped


def _add_ratios(results: List[Dict]) -> None:
    base: Dict[Tuple[str, str, str], float] = {}
    for r in results:
        if r["baseline"] and r["status"] == "ok":
            base[(r["suite"], r["chart"], r["group"])] = r["ops_per_s"]
    for r in results:
        b = base.get((r["suite"], r["chart"], r["group"]))
        if r["status"] == "ok" and b:
            # ratio: this impl relative to shmkit; speedup: how many times
            # faster shmkit is than this impl.
            r["ratio_vs_shmkit"] = r["ops_per_s"] / b
            r["shmkit_speedup"] = b / r["ops_per_s"] if r["ops_per_s"] else None


# ------------------------------------------------------------------ output


def _fmt_rate(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _fmt_ratio(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}x"
    if x >= 0.1:
        return f"{x:.2f}x"
    return f"{x:.2g}x"


def format_table(results: List[Dict]) -> str:
    """The printed table: per chart and operation, each impl's ops/s and how
    many times faster shmkit is."""
    lines = []
    # cases run grouped by fixture; print them grouped by chart and operation
    chart_ix: Dict[str, int] = {}
    group_ix: Dict[Tuple[str, str], int] = {}
    for r in results:
        chart_ix.setdefault(r["chart"], len(chart_ix))
        group_ix.setdefault((r["chart"], r["group"]), len(group_ix))
    results = sorted(results, key=lambda r: (chart_ix[r["chart"]],
                                             group_ix[(r["chart"], r["group"])],
                                             not r["baseline"]))
    current = None
    for r in results:
        if r["chart"] != current:
            current = r["chart"]
            header = f"{'operation':<34} {'implementation':<28} {r['unit']:>9}  {'shmkit is':>10}"
            lines.append("")
            lines.append(f"== {current}")
            lines.append(header)
            lines.append("-" * len(header))
        if r["status"] == "ok":
            sp = r.get("shmkit_speedup")
            if r["baseline"]:
                ratio = "(base)"
            elif sp is None:
                ratio = "-"
            else:
                ratio = _fmt_ratio(sp)
            lines.append(f"{r['group']:<34} {r['impl']:<28} {_fmt_rate(r['ops_per_s']):>9}  {ratio:>10}")
        elif r["status"] == "error":
            lines.append(f"{r['group']:<34} {r['impl']:<28} {'error':>9}  {r['reason'][:60]}")
    lines.append("")
    lines.append("'shmkit is Nx': shmkit's ops/s divided by that implementation's "
                 "(>1: shmkit faster). Medians of repeats.")
    return "\n".join(lines)


def format_markdown(report: Dict[str, Any], chart_dir: Optional[str] = None,
                    note: str = "") -> str:
    """The report as Markdown (for docs/BENCHMARKS.md / the README): the
    machine, how to reproduce, one table per chart, and the charts."""
    m = report["machine"]
    v = report["versions"]
    lines = [
        "# shmkit benchmarks",
        "",
        f"Measured with `shmkit bench{'' if report['mode'] == 'full' else ' --' + report['mode']}` "
        f"({report['mode']} mode: {report['params']['repeats']} repeats of "
        f"~{report['params']['budget']}s per case, medians) on "
        f"{m.get('cpu') or 'unknown CPU'}, {m.get('cpus_usable')} usable cores, "
        f"{(m.get('memory_bytes') or 0) >> 30} GiB, {m.get('platform')}, "
        f"Python {m.get('python')}, in {report['duration_s']:.0f}s.",
        "",
        "Reproduce: `make demo` (runs `shmkit bench --quick`), or "
        "`pip install .[bench] && pip install -r requirements-bench.txt && shmkit bench`.",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        "'shmkit is' = shmkit's rate / that implementation's rate (above 1: shmkit is faster).",
    ]
    if note:
        lines += ["", note]
    lines += [
        "",
        "How it is measured: every implementation runs the same Python loop "
        "(`for k in keys: d[k]`, `q.put(item)`, ...). A case doubles its operation "
        "count until one timed call lasts the budget, then takes the median of the "
        "repeats. Set/delete use fresh keys, inserted or removed again outside the "
        "timed part. Two-process figures are the sum of both forked workers' rates "
        "while both run, each worker pinned to a core of its own; shmkit's "
        "'1 process' baseline is the same worker alone, run before each "
        "2-process repeat (paired, so the machine's drift hits both alike). "
        "Queue figures are messages delivered per second, end to end, "
        "from a producer process to a consumer process, with bounded queues. A peer "
        "that raises is shown as an error with its message (e.g. a lost update) and "
        "the run goes on. Source: `shmkit/bench/` (`suite_alloc.py`, `suite_dict.py`, "
        "`suite_queue.py`).",
    ]
    chart_ix: Dict[str, List[Dict]] = {}
    for r in report["results"]:
        chart_ix.setdefault(r["chart"], []).append(r)
    charts = {os.path.splitext(os.path.basename(p))[0]: p for p in report.get("charts", [])}
    for chart, rows in chart_ix.items():
        unit = rows[0]["unit"]
        lines += ["", f"## {chart_title(chart)}", "", f"| operation | implementation | {unit} | shmkit is |",
                  "|---|---|---:|---:|"]
        groups = list(dict.fromkeys(r["group"] for r in rows))
        for g in groups:
            for r in sorted((r for r in rows if r["group"] == g), key=lambda r: not r["baseline"]):
                if r["status"] == "ok":
                    sp = r.get("shmkit_speedup")
                    ratio = "base" if r["baseline"] else (_fmt_ratio(sp) if sp else "-")
                    lines.append(f"| {g} | {r['impl']} | {_fmt_rate(r['ops_per_s'])} | {ratio} |")
                elif r["status"] == "error":
                    lines.append(f"| {g} | {r['impl']} | error | {r['reason'][:80]} |")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in chart)
        if safe in charts:
            path = charts[safe] if chart_dir is None else os.path.join(chart_dir, safe + ".png")
            lines += ["", f"![{chart}]({path})"]
    if report.get("targets"):
        lines += ["", "## Targets", "", "| target | measured | needed | |",
                  "|---|---:|---:|---|"]
        for t in report["targets"]:
            state = {True: "met", False: "missed", None: "not measured"}[t["met"]]
            lines.append(f"| {t['target']} | {_fmt_rate(t['measured'])} | "
                         f"{_fmt_rate(t['required'])} | {state} |")
    notes = (report.get("peer_install") or {}).get("notes") or {}
    if report.get("skipped_impls") or notes:
        lines += ["", "## Skipped peers and install notes", ""]
        for impl, reason in (report.get("skipped_impls") or {}).items():
            lines.append(f"- {impl}: {reason}")
        for req, note in notes.items():
            lines.append(f"- {req}: {note}")
        lines.append("- sharedbox is pinned to 0.2.4, its last release with a dict "
                     "(`sharedbox.SharedDict`); 0.3 and later offer typed boxes instead.")
    return "\n".join(lines) + "\n"


def chart_title(chart: str) -> str:
    """A readable title for a chart key such as "dict-1KB-bytes-2proc"."""
    parts = chart.split("-")
    if parts[0] == "alloc":
        return f"{parts[1]} allocator, 64-byte blocks, 1 process"
    if parts[0] == "dict":
        procs = parts[-1].replace("proc", "")
        values = " ".join(parts[1:-1])
        values = {"str": "short str", "int": "int"}.get(values, values)
        return (f"dict, {values} values, {procs} process{'es' if procs != '1' else ''}"
                + (" at once (aggregate)" if procs != "1" else ""))
    if parts[0] == "queue":
        how = " ".join(parts[1:])
        return f"queue, producer process -> consumer process, {how}"
    return chart


def draw_charts(results: List[Dict], out_dir: str) -> List[str]:
    """One PNG per chart: grouped bars (operations x implementations), log
    scale ops/s.  Returns the paths written ([] if matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return []
    paths = []
    charts: Dict[str, List[Dict]] = {}
    for r in results:
        if r["status"] == "ok" and r.get("ops_per_s"):
            charts.setdefault(r["chart"], []).append(r)
    for chart, rows in charts.items():
        groups = list(dict.fromkeys(r["group"] for r in rows))
        impls = list(dict.fromkeys(r["impl"] for r in rows))
        # shmkit first so its colour is stable across charts
        order = {name: k for k, name in enumerate(impls)}
        impls.sort(key=lambda s: (not s.startswith("shmkit"), order[s]))
        width = 0.8 / max(len(impls), 1)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) + 2.5), 4.2))
        for j, impl in enumerate(impls):
            xs, ys = [], []
            for gi, g in enumerate(groups):
                for r in rows:
                    if r["group"] == g and r["impl"] == impl:
                        xs.append(gi + (j - (len(impls) - 1) / 2) * width)
                        ys.append(r["ops_per_s"])
            ax.bar(xs, ys, width=width * 0.95, label=impl)
        ax.set_yscale("log")
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(rows[0]["unit"] + " (log scale, higher is better)")
        ax.set_title(chart_title(chart))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", which="major", alpha=0.3)
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in chart)
        path = os.path.join(out_dir, f"{safe}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ entry


def collect(suites: Sequence[str], mode: str) -> List[Case]:
    cases: List[Case] = []
    for s in suites:
        mod = importlib.import_module(f"{__package__}.suite_{s}")
        cases.extend(mod.cases(mode))
    return cases


def collect_targets(suites: Sequence[str]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for s in suites:
        mod = importlib.import_module(f"{__package__}.suite_{s}")
        out.extend(getattr(mod, "TARGETS", []))
    return out


def evaluate_targets(results: List[Dict], targets: List[Dict]) -> List[Dict]:
    """The speed targets, checked against this run: reported,
    never asserted (a noisy 2-core machine is no place for a pass/fail).

    A target names a result by (chart, group, impl) and either a minimum
    rate ("min") or a factor over another result ("over": (chart, group,
    impl), "factor")."""
    index = {(r["chart"], r["group"], r["impl"]): r for r in results if r["status"] == "ok"}
    out = []
    for t in targets:
        row = {"target": t["label"], "measured": None, "required": None, "met": None}
        r = index.get(t["of"])
        if "min" in t:
            row["required"] = t["min"]
            if r:
                row["measured"] = r["ops_per_s"]
        else:
            other = index.get(t["over"])
            if other:
                row["required"] = other["ops_per_s"] * t["factor"]
            if r:
                row["measured"] = r["ops_per_s"]
        if row["measured"] is not None and row["required"] is not None:
            row["met"] = row["measured"] >= row["required"]
        else:
            row["met"] = None  # not measured in this run (peer or mode missing)
        out.append(row)
    return out


def format_targets(rows: List[Dict]) -> str:
    lines = ["", "== targets (informative, not a test)"]
    for t in rows:
        if t["met"] is None:
            state, detail = "n/a", "not measured in this run"
        else:
            state = "met" if t["met"] else "MISSED"
            detail = f"{_fmt_rate(t['measured'])} vs {_fmt_rate(t['required'])} needed"
        lines.append(f"  [{state:>6}] {t['target']}: {detail}")
    return "\n".join(lines)


def run(mode: str = "quick", out_dir: Optional[str] = "bench-results",
        suites: Optional[Sequence[str]] = None, charts: bool = True,
        progress: bool = True, print_table: bool = True) -> Dict[str, Any]:
    """Run the suites and return the report (also written to
    OUT/results.json, with PNG charts, and printed as a table)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
    suites = list(suites or SUITES)
    if out_dir:
        # fail now, not after a minute of measuring
        os.makedirs(out_dir, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise PermissionError(f"cannot write to {out_dir}")
    t0 = time.time()
    cases = collect(suites, mode)
    with QuietPeers():
        results, skipped = run_cases(cases, mode, progress=progress)
        gc.collect()  # let the peers' destructors complain now, not at exit
    report: Dict[str, Any] = {
        "schema": "shmkit-bench/1",
        "mode": mode,
        "params": MODES[mode],
        "suites": suites,
        "started_unix": t0,
        "duration_s": round(time.time() - t0, 3),
        "machine": machine_info(),
        "versions": versions(),
        "skipped_impls": skipped,
        "peer_destructor_errors_ignored": QuietPeers.count,
        "peer_install": install_log(),
        "results": results,
        # tiny runs a handful of operations per case: no figure means anything
        "targets": [] if mode == "tiny" else evaluate_targets(results, collect_targets(suites)),
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        report["charts"] = draw_charts(results, out_dir) if charts else []
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
        with open(os.path.join(out_dir, "results.md"), "w") as f:
            f.write(format_markdown(report, chart_dir="."))
    if print_table:
        print(format_table(results))
        if report["targets"]:
            print(format_targets(report["targets"]))
        if skipped:
            print("\nskipped:")
            for impl, reason in skipped.items():
                print(f"  {impl}: {reason}")
        for req, note in (report["peer_install"].get("notes") or {}).items():
            print(f"note: {req}: {note}")
        errors = [r for r in results if r["status"] == "error"]
        if errors:
            print(f"\n{len(errors)} case(s) failed (see results.json)")
        if out_dir:
            print(f"\nresults: {os.path.join(out_dir, 'results.json')}"
                  + (f", {len(report.get('charts', []))} chart(s) in {out_dir}/" if charts else ""))
    return report


# ------------------------------------------------------------------ options


def add_arguments(p: argparse.ArgumentParser, suite_option: bool = True) -> None:
    """The options of a suite run (``shmkit bench`` and ``main``)."""
    p.add_argument("--quick", action="store_true",
                   help="fewer cases and shorter runs (under 2 minutes on 2 cores)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke-test mode: every case runs a few operations (for tests)")
    p.add_argument("--out", metavar="DIR", default="bench-results",
                   help="where to write results.json and the charts (default: bench-results)")
    if suite_option:
        p.add_argument("--suite", action="append", metavar="NAME",
                       help="run only these suites (alloc, dict, queue; repeatable or "
                       "comma-separated)")
    p.add_argument("--no-charts", action="store_true", help="do not draw PNG charts")
    p.add_argument("--no-progress", action="store_true", help="no progress indicator")


def run_from_args(args: argparse.Namespace, suites: Optional[Sequence[str]] = None) -> int:
    """Run from parsed options (``add_arguments``); ``suites`` when the
    options have no ``--suite``.  0 when the run finished, 1 if not;
    ValueError for an unknown suite, OSError when ``--out`` is not writable."""
    mode = "tiny" if args.tiny else ("quick" if args.quick else "full")
    if getattr(args, "suite", None):
        suites = [s.strip() for part in args.suite for s in part.split(",") if s.strip()]
    unknown = [s for s in suites or () if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite {unknown[0]!r} (choose from {', '.join(SUITES)})")
    # this process ends after the run: keep peers' destructor noise quiet
    # through interpreter shutdown too
    QuietPeers(permanent=True).__enter__()
    report = run(mode=mode, out_dir=args.out, suites=suites,
                 charts=not args.no_charts, progress=not args.no_progress)
    return 0 if report is not None else 1


def main(argv: Optional[Sequence[str]] = None, suites: Optional[Sequence[str]] = None) -> int:
    """The ``benchmarks/bench_*.py`` scripts: the ``suites`` of ``shmkit
    bench`` with its options (``--quick``, ``--tiny``, ``--out DIR``, ...)."""
    p = argparse.ArgumentParser(description=f"shmkit benchmark suites: {', '.join(suites or SUITES)}")
    add_arguments(p, suite_option=suites is None)
    args = p.parse_args(argv)
    try:
        return run_from_args(args, suites)
    except ValueError as e:
        p.error(str(e))
    except OSError as e:
        print(f"cannot write results to {args.out!r}: {e.strerror or e}", file=sys.stderr)
    return 1


# ------------------------------------------ standalone benchmark scripts

def script_parser(prog: str, doc: str, what: str) -> argparse.ArgumentParser:
    """The parser of a ``python -m shmkit.bench.<what>`` script: its
    description from ``doc``, and ``--out``, ``--no-chart``, ``--table``."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--out", default="bench-results",
                   help=f"where to write {what}.json and {what}.png (default bench-results)")
    p.add_argument("--no-chart", dest="no_charts", action="store_true",
                   help=f"do not draw {what}.png")
    p.add_argument("--table", metavar="JSON", help=f"print the markdown table of a {what}.json")
    return p


def script_main(p: argparse.ArgumentParser, argv: Optional[Sequence[str]],
                format_table: Callable[[Dict[str, Any]], str],
                run_from_args: Callable[[argparse.Namespace], int]) -> int:
    """Parse argv; print the table of ``--table FILE``, else run (a
    ValueError is a usage error)."""
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(format_table(json.load(f)))
        return 0
    try:
        return run_from_args(args)
    except ValueError as e:
        p.error(str(e))
        return 2

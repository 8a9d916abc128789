"""The scaling benchmark: aggregate ops/s against the number of processes.

``shmkit bench --scale`` / ``make scale`` / ``python -m shmkit.bench.scale``.

For each workload and each N in ``--procs`` (default 1, 2, 4, 8, 16, 32),
N processes are forked (pinned one per core when N <= the usable cores,
``harness.fork_workers``), start together, run the operation for
``--seconds`` and report their operations and the time they ran; a figure is
the sum of each process's ops/s, the median of ``--repeats`` runs on a fresh
fixture each.  The C workloads come from ``build/bench/bench_scale``
(``--c-binary``; skipped with the reason when absent), the Python ones, with
the peers that are installed (faster-fifo, UltraDict, ``multiprocessing``),
from here.  Output: ``scale.json`` and ``scale.png`` (one panel per workload,
ops/s against N, log-log) in ``--out``; ``--table FILE`` prints the
markdown table of a ``scale.json`` (what docs/BENCHMARKS.md shows).

The environment variables SHMKIT_SCALE_PROCS (e.g. "1,2,4"),
SHMKIT_SCALE_SECONDS and SHMKIT_SCALE_REPEATS set the defaults, so
``make scale`` can be limited without editing anything.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import harness
from .harness import (Skip, check_import, close_then_unlink, fork_workers, shm_name,
                      unlink_then_close)

DEFAULT_PROCS = (1, 2, 4, 8, 16, 32)
OWN_KEYS = 1000
ITEM = b"m" * 64
STEP = 64          # operations between clock reads


@dataclasses.dataclass
class Workload:
    name: str                       # "py-counter-add"
    label: str                      # what the table says
    impl: str                       # "shmkit Counter", "faster-fifo", ...
    make: Callable[[], Tuple[Any, Callable[[], None]]]   # fixture, close
    # step(fixture, w, nproc) -> a function doing STEP-ish operations and
    # returning how many it did; called in the forked worker
    step: Callable[[Any, int, int], Callable[[], int]]
    requires: Sequence[str] = ()


# ------------------------------------------------------------ fixtures


def _shmkit_dict():
    import shmkit

    name = shm_name("sd")
    d = shmkit.SharedDict(name, create=True)
    return d, close_then_unlink(d, name)


def _ultradict():
    from UltraDict import UltraDict

    kw = dict(create=True, buffer_size=1 << 20, full_dump_size=64 << 20, auto_unlink=False)
    try:
        d = UltraDict(name=shm_name("u"), shared_lock=True, **kw)
    except Exception as e:
        if "atomics" not in str(e):
            raise
        # without the optional `atomics` package UltraDict's shared lock is
        # unavailable; its default lock is a multiprocessing RLock, which the
        # forked workers inherit and which serialises them just the same
        d = UltraDict(name=shm_name("u"), **kw)

    return d, unlink_then_close(d)


def _manager_dict():
    import multiprocessing as mp

    m = mp.get_context("fork").Manager()
    return m.dict(), m.shutdown


def _counter():
    import shmkit

    name = shm_name("c")
    c = shmkit.Counter(name, create=True)
    return c, close_then_unlink(c, name)


def _array():
    import shmkit

    name = shm_name("a")
    a = shmkit.Array(name, "int64", 1, create=True)
    return a, close_then_unlink(a, name)


def _mp_value():
    import multiprocessing as mp

    v = mp.get_context("fork").Value("q", 0)
    return v, lambda: None


def _shmkit_queue():
    import shmkit

    name = shm_name("q")
    q = shmkit.Queue(name, create=True, maxsize=100_000)
    return q, close_then_unlink(q, name)


def _faster_fifo():
    from faster_fifo import Queue

    q = Queue(max_size_bytes=8 << 20)
    return q, q.close


def _mp_queue():
    import multiprocessing as mp

    q = mp.get_context("fork").Queue(100_000)
    return q, q.close


# --------------------------------------------------------------- steps


def _set_own(d, w, nproc):
    keys = [f"p{w}-{i}" for i in range(OWN_KEYS)]
    state = [0]

    def step():
        i = state[0]
        for k in range(STEP):
            d[keys[(i + k) % OWN_KEYS]] = i + k
        state[0] = i + STEP
        return STEP
    return step


def _incr_shmkit(d, w, nproc):
    incr = d.incr

    def step():
        for _ in range(STEP):
            incr("hits")
        return STEP
    return step


def _incr_ultradict(d, w, nproc):
    def step():
        for _ in range(STEP):
            with d.lock:
                d["hits"] = d.get("hits", 0) + 1
        return STEP
    return step


def _counter_add(c, w, nproc):
    add = c.add

    def step():
        for _ in range(STEP):
            add()
        return STEP
    return step


def _array_add(a, w, nproc):
    add = a.add

    def step():
        for _ in range(STEP):
            add(0, 1)
        return STEP
    return step


def _value_add(v, w, nproc):
    lock = v.get_lock()

    def step():
        for _ in range(STEP):
            with lock:
                v.value += 1
        return STEP
    return step


def _queue_half(q, w, nproc):
    """Even workers put, odd ones get; a lone worker (or the odd one out)
    alternates.  A put on a full / get on an empty queue counts nothing."""
    import queue as stdq

    full, empty = stdq.Full, stdq.Empty      # shmkit.Full and Empty are these
    put, get = q.put_nowait, q.get_nowait
    alternate = nproc == 1 or (nproc % 2 and w == nproc - 1)
    if hasattr(q, "cancel_join_thread"):
        q.cancel_join_thread()          # a producer's exit never waits for its feeder

    def do_put():
        try:
            put(ITEM)
            return 1
        except full:
            return 0

    def do_get():
        try:
            get()
            return 1
        except empty:
            return 0

    def step():
        n = 0
        if alternate:
            for _ in range(STEP // 2):
                n += do_put() + do_get()
        else:
            op = do_put if w % 2 == 0 else do_get
            for _ in range(STEP):
                n += op()
        return n
    return step


WORKLOADS: List[Workload] = [
    Workload("py-dict-set-own", "Python: dict set own keys", "shmkit", _shmkit_dict, _set_own),
    Workload("py-dict-set-own", "Python: dict set own keys", "UltraDict", _ultradict, _set_own,
             ("UltraDict",)),
    Workload("py-dict-set-own", "Python: dict set own keys", "multiprocessing Manager().dict()",
             _manager_dict, _set_own),
    Workload("py-incr-one-key", "Python: incr on one key", "shmkit", _shmkit_dict, _incr_shmkit),
    Workload("py-incr-one-key", "Python: incr on one key", "UltraDict", _ultradict,
             _incr_ultradict, ("UltraDict",)),
    Workload("py-one-counter", "Python: increments on one counter", "shmkit Counter",
             _counter, _counter_add),
    Workload("py-one-counter", "Python: increments on one counter", "shmkit Array.add",
             _array, _array_add),
    Workload("py-one-counter", "Python: increments on one counter", "multiprocessing.Value",
             _mp_value, _value_add),
    Workload("py-queue-64-half", "Python: queue 64 B half put / half get", "shmkit",
             _shmkit_queue, _queue_half),
    Workload("py-queue-64-half", "Python: queue 64 B half put / half get", "faster-fifo",
             _faster_fifo, _queue_half, ("faster_fifo",)),
    Workload("py-queue-64-half", "Python: queue 64 B half put / half get",
             "multiprocessing.Queue", _mp_queue, _queue_half),
]


# -------------------------------------------------------------- running


def _env_procs() -> Tuple[int, ...]:
    v = os.environ.get("SHMKIT_SCALE_PROCS")
    return parse_procs(v) if v else DEFAULT_PROCS


def parse_procs(text: str) -> Tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"process counts must be integers like 1,2,4, not {text!r}") from None
    if not out or any(n < 1 or n > 256 for n in out):
        raise ValueError(f"process counts must be between 1 and 256, not {text!r}")
    return out


def _run_once(wl: Workload, nproc: int, seconds: float) -> float:
    fx, close = wl.make()
    try:
        def target(w):
            def run(budget, conn, go):
                step = wl.step(fx, w, nproc)
                conn.send("ready")
                go.wait()
                clock = time.perf_counter
                ops, t0 = 0, clock()
                end = t0 + budget
                while clock() < end:
                    ops += step()
                conn.send((ops, clock() - t0))
            return run

        out = fork_workers([target(w) for w in range(nproc)], seconds)
        return sum(ops / t for ops, t in out if t > 0)
    finally:
        close()


def run_python(procs: Sequence[int], seconds: float, repeats: int,
               only: Optional[Sequence[str]] = None,
               log: Callable[[str], None] = lambda s: None) -> List[Dict[str, Any]]:
    cpus = harness.machine_info()["cpus_usable"] or 1
    results: List[Dict[str, Any]] = []
    for wl in WORKLOADS:
        if only and wl.name not in only:
            continue
        row = {"workload": wl.name, "label": wl.label, "impl": wl.impl, "lang": "Python"}
        reason = next((r for r in (check_import(m) for m in wl.requires) if r), None)
        if reason:
            results.append({**row, "nproc": None, "skipped": reason})
            log(f"  {wl.name:20} {wl.impl:34} skipped: {reason}")
            continue
        for n in procs:
            rec = {**row, "nproc": n, "pinned": n <= cpus}
            runs = []
            try:
                for _ in range(repeats):
                    runs.append(_run_once(wl, n, seconds))
                rec.update(ops_per_s=round(statistics.median(runs)), runs=[round(r) for r in runs])
            except Skip as e:
                rec.update(ops_per_s=None, skipped=str(e))
            except Exception as e:      # a peer that breaks: recorded, the run goes on
                rec.update(ops_per_s=None, error=f"{type(e).__name__}: {e}")
            finally:
                harness.cleanup_leftovers()
            results.append(rec)
            shown = f"{rec['ops_per_s']:>14,}" if rec.get("ops_per_s") else rec.get("error", "-")
            log(f"  {wl.name:20} {wl.impl:34} N={n:<3} {shown}")
    return results


def default_c_binary() -> Optional[str]:
    """build/bench/bench_scale of the checkout this module sits in, if any,
    else of the current directory."""
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.path.join(here, "..", "..", ".."), os.getcwd()):
        p = os.path.normpath(os.path.join(root, "build", "bench", "bench_scale"))
        if os.access(p, os.X_OK):
            return p
    return None


def run_c(binary: Optional[str], procs: Sequence[int], seconds: float, repeats: int,
          only: Optional[Sequence[str]], out_dir: str) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """The C workloads' results, or ([], reason) when they cannot run."""
    if not binary:
        return [], "build/bench/bench_scale not found (run `make scale`, or give --c-binary)"
    path = os.path.join(out_dir, "scale-c.json")
    cmd = [binary, "--procs", ",".join(map(str, procs)), "--seconds", str(seconds),
           "--repeats", str(repeats), "--json", path]
    if only:
        cmd += ["--only", ",".join(only)]
    try:
        subprocess.run(cmd, check=True)
        with open(path) as f:
            return json.load(f)["results"], None
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as e:
        return [], f"{binary} failed: {e}"


# ------------------------------------------------------------ reporting


def draw_chart(results: List[Dict[str, Any]], path: str, title: str) -> Optional[str]:
    """One panel per workload, a line per implementation: ops/s against N
    (log-log).  None if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    panels: Dict[str, List[Dict]] = {}
    for r in results:
        if r.get("ops_per_s"):
            panels.setdefault(r["label"], []).append(r)
    if not panels:
        return None
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (label, rs) in zip(axes.flat, panels.items()):
        for impl in dict.fromkeys(r["impl"] for r in rs):
            pts = sorted((r["nproc"], r["ops_per_s"]) for r in rs if r["impl"] == impl)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ns = sorted({r["nproc"] for r in rs})
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("processes", fontsize=8)
        ax.set_ylabel("ops/s", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(x: Optional[float]) -> str:
    if not x:
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def format_table(report: Dict[str, Any]) -> str:
    """The markdown table of a scale report: a row per workload and
    implementation, ops/s per N, and the speed-up of the largest N over 1."""
    rs = report["results"]
    ns = sorted({r["nproc"] for r in rs if r.get("nproc")})
    head = "| workload | implementation | " + " | ".join(f"N={n}" for n in ns) + \
        f" | N={ns[-1] if ns else '?'} / N=1 |"
    lines = [head, "|" + "---|" * (len(ns) + 3)]
    rows: Dict[Tuple[str, str], Dict[int, Dict]] = {}
    skipped = []
    for r in rs:
        if r.get("nproc") is None:
            skipped.append(f"{r['impl']} ({r['label']}): {r.get('skipped')}")
            continue
        rows.setdefault((r["label"], r["impl"]), {})[r["nproc"]] = r
    for (label, impl), by_n in rows.items():
        cells = [_fmt(by_n.get(n, {}).get("ops_per_s")) for n in ns]
        one, top = by_n.get(1, {}).get("ops_per_s"), by_n.get(ns[-1], {}).get("ops_per_s")
        ratio = f"{top / one:.2g}x" if one and top else "-"
        lines.append(f"| {label} | {impl} | " + " | ".join(cells) + f" | {ratio} |")
    m = report.get("machine", {})
    lines.append("")
    lines.append(f"Machine: {m.get('cpu', '?')}, {m.get('cpus_usable', '?')} usable cores; "
                 f"{report.get('seconds')} s per run, median of {report.get('repeats')}; "
                 "processes pinned one per core when N <= cores.")
    for s in skipped + [f"C workloads: {report['c_skipped']}"] * bool(report.get("c_skipped")):
        lines.append(f"Skipped: {s}")
    return "\n".join(lines)


SECTION = "## Scaling with processes"


def format_section(report: Dict[str, Any], chart: Optional[str] = None, note: str = "") -> str:
    """The docs/BENCHMARKS.md section of a scale report (benchmarks/publish.py)."""
    m = report.get("machine", {})
    out = [SECTION, "",
           f"`make scale` on {m.get('cpu', '?')}, **{m.get('cpus_usable', '?')} usable "
           f"cores**, Python {m.get('python', '?')}: aggregate ops/s of N processes doing the "
           "same operation at once (the sum of each process's rate), each pinned to a core of "
           "its own when N <= cores, median of the repeats, a fresh structure per run. "
           "C rows: `build/bench/bench_scale` (no Python in the way); Python rows: "
           "`shmkit.bench.scale`, with the peers that were installed. Where N exceeds the "
           "cores, processes time-share them: those figures show how a structure degrades "
           "under oversubscription, not scaling.", ""]
    if note:
        out += [note, ""]
    out.append(format_table(report))
    if chart:
        out += ["", f"![scale]({chart})"]
    return "\n".join(out) + "\n"


def replace_section(markdown: str, section: str) -> str:
    """`markdown` with its scaling section replaced by (or, if absent,
    followed by) `section`."""
    start = markdown.find(SECTION)
    if start < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    end = markdown.find("\n## ", start + len(SECTION))
    rest = markdown[end + 1:] if end >= 0 else ""
    return markdown[:start] + section + ("\n" + rest if rest else "")


def run(procs: Sequence[int] = DEFAULT_PROCS, seconds: float = 1.0, repeats: int = 3,
        out_dir: str = "bench-results", c_binary: Optional[str] = None,
        only: Optional[Sequence[str]] = None, python: bool = True, chart: bool = True,
        log: Callable[[str], None] = print) -> Dict[str, Any]:
    os.makedirs(out_dir, exist_ok=True)
    machine = harness.machine_info()
    log(f"scale: N in {list(procs)}, {seconds} s per run, median of {repeats}, "
        f"{machine['cpus_usable']} usable cores")
    c_results, c_skipped = run_c(c_binary, procs, seconds, repeats, only, out_dir)
    if c_skipped:
        log(f"  C workloads skipped: {c_skipped}")
    py_results = run_python(procs, seconds, repeats, only, log) if python else []
    report: Dict[str, Any] = {
        "kind": "scale",
        "created_unix": time.time(),
        "machine": machine,
        "versions": harness.versions(),
        "procs": list(procs),
        "seconds": seconds,
        "repeats": repeats,
        "c_skipped": c_skipped,
        "results": c_results + py_results,
    }
    path = os.path.join(out_dir, "scale.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    log(f"wrote {path}")
    if chart:
        title = (f"shmkit scaling: aggregate ops/s against processes "
                 f"({machine['cpus_usable']} usable cores, {machine['cpu']})")
        png = draw_chart(report["results"], os.path.join(out_dir, "scale.png"), title)
        if png:
            log(f"wrote {png}")
        elif any(r.get("ops_per_s") for r in report["results"]):
            log("no chart: matplotlib is not installed")
    return report


def main(argv: Optional[List[str]] = None) -> int:
    p = harness.script_parser("python -m shmkit.bench.scale", __doc__, "scale")
    add_arguments(p)
    p.add_argument("--no-python", action="store_true", help="only the C workloads")
    return harness.script_main(p, argv, format_table, run_from_args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a scale run (shared by ``shmkit bench --scale``)."""
    p.add_argument("--procs", default=None,
                   help="scale: process counts, e.g. 1,2,4 (default: SHMKIT_SCALE_PROCS "
                   "or 1,2,4,8,16,32)")
    p.add_argument("--seconds", type=float, default=None,
                   help="scale: seconds per run (default 1.0, or SHMKIT_SCALE_SECONDS)")
    p.add_argument("--repeats", type=int, default=None,
                   help="scale: runs per figure, the median is kept (default 3, or "
                   "SHMKIT_SCALE_REPEATS)")
    p.add_argument("--c-binary", default=None,
                   help="scale: the C benchmark (default: build/bench/bench_scale if built)")
    p.add_argument("--only", default=None,
                   help="scale: comma-separated workload names (C and Python)")


def run_from_args(args) -> int:
    """Run from parsed options (add_arguments plus out, no_charts and
    optionally no_python).  ValueError for a bad option."""
    procs = parse_procs(args.procs) if args.procs else _env_procs()
    seconds = args.seconds if args.seconds is not None else \
        float(os.environ.get("SHMKIT_SCALE_SECONDS", "1.0"))
    repeats = args.repeats if args.repeats is not None else \
        int(os.environ.get("SHMKIT_SCALE_REPEATS", "3"))
    if seconds <= 0 or repeats < 1:
        raise ValueError("--seconds must be > 0 and --repeats >= 1")
    only = [s for s in args.only.split(",") if s] if args.only else None
    harness.QuietPeers(permanent=True).__enter__()
    try:
        run(procs, seconds, repeats, args.out, args.c_binary or default_c_binary(), only,
            python=not getattr(args, "no_python", False), chart=not args.no_charts)
    finally:
        harness.cleanup_leftovers()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The latency benchmark: round trips of one item between two processes.

``shmkit bench --latency`` / ``make latency`` / ``python -m shmkit.bench.latency``.

A parent puts a 64-byte item on queue A; a child process gets it and puts it
back on queue B; the parent gets it: one round trip, timed with
``time.perf_counter_ns``.  After ``WARMUP`` untimed round trips, ``--trips``
timed ones (default 20,000) per run, for shmkit.Queue and each peer that is
installed (faster-fifo, ``multiprocessing.Queue``,
``multiprocessing.SimpleQueue``); each percentile (p50, p90, p99, p99.9) is
the median over ``--repeats`` runs.  Besides, the CPU time an idle waiter
burns: a child blocks in ``get(timeout=IDLE_SECONDS)`` on an empty queue and
reports its CPU seconds (what a worker waiting for work costs the machine).

Output in ``--out``: ``latency.json`` (every run's percentiles, the
medians, the machine) and ``latency.png`` (a histogram of the round trips of
one run per queue, log-scaled), and a markdown table on stdout
(``--table FILE`` prints it again from a ``latency.json``).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import harness
from .harness import check_import, shm_name

ITEM = b"x" * 64
WARMUP = 500
IDLE_SECONDS = 1.0
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))

# (label, module needed or None, factory) -> factory returns (a, b, close)
Factory = Callable[[], Tuple[Any, Any, Callable[[], None]]]


def _shmkit() -> Tuple[Any, Any, Callable[[], None]]:
    import shmkit

    na, nb = shm_name("la"), shm_name("lb")
    a = shmkit.Queue(na, create=True)
    b = shmkit.Queue(nb, create=True)

    def close() -> None:
        a.close()
        b.close()
        shmkit.unlink(na)
        shmkit.unlink(nb)

    return a, b, close


def _faster_fifo() -> Tuple[Any, Any, Callable[[], None]]:
    import faster_fifo

    a, b = faster_fifo.Queue(1 << 20), faster_fifo.Queue(1 << 20)
    return a, b, lambda: None


def _mp_queue() -> Tuple[Any, Any, Callable[[], None]]:
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Queue(), ctx.Queue()

    def close() -> None:
        for q in (a, b):
            q.close()
            q.join_thread()

    return a, b, close


def _mp_simple() -> Tuple[Any, Any, Callable[[], None]]:
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.SimpleQueue(), ctx.SimpleQueue()

    def close() -> None:
        a.close()
        b.close()

    return a, b, close


QUEUES: List[Tuple[str, Optional[str], Factory]] = [
    ("shmkit.Queue", None, _shmkit),
    ("faster-fifo", "faster_fifo", _faster_fifo),
    ("multiprocessing.Queue", None, _mp_queue),
    ("multiprocessing.SimpleQueue", None, _mp_simple),
]


def _echo(a: Any, b: Any, n: int) -> None:
    get, put = a.get, b.put
    for _ in range(n):
        put(get())


def _idle(a: Any, conn: Any) -> None:
    t0 = time.process_time()
    try:
        a.get(timeout=IDLE_SECONDS)
    except Exception:
        pass            # queue.Empty (or the peer's own Empty)
    conn.send(time.process_time() - t0)


def round_trips(factory: Factory, trips: int) -> Tuple[List[int], float]:
    """One run: the round-trip times (ns) and the idle waiter's CPU s."""
    ctx = multiprocessing.get_context("fork")
    a, b, close = factory()
    try:
        child = ctx.Process(target=_echo, args=(a, b, WARMUP + trips), daemon=True)
        child.start()
        put, get, clock = a.put, b.get, time.perf_counter_ns
        times = []
        for _ in range(WARMUP + trips):
            t = clock()
            put(ITEM)
            get()
            times.append(clock() - t)
        child.join()
        rx, tx = ctx.Pipe(duplex=False)
        idler = ctx.Process(target=_idle, args=(a, tx), daemon=True)
        idler.start()
        idle_cpu = rx.recv()
        idler.join()
        return times[WARMUP:], idle_cpu
    finally:
        close()


def percentiles(times: List[int]) -> Dict[str, float]:
    s = sorted(times)
    return {k: s[min(len(s) - 1, int(p * len(s)))] / 1000.0 for k, p in PERCENTILES}


def run(trips: int = 20000, repeats: int = 3, out_dir: Optional[str] = "bench-results",
        charts: bool = True) -> Dict[str, Any]:
    """Run every queue that is installed; the report (also written to
    out_dir/latency.json unless out_dir is None)."""
    if trips < 100 or repeats < 1:
        raise ValueError("--trips must be >= 100 and --repeats >= 1")
    rows, samples, skipped = [], {}, {}
    for label, module, factory in QUEUES:
        if module:
            why = check_import(module)
            if why:
                skipped[label] = why
                continue
        runs, idle = [], []
        for _ in range(repeats):
            times, cpu = round_trips(factory, trips)
            runs.append(percentiles(times))
            idle.append(cpu)
        samples[label] = times
        med = {k: statistics.median(r[k] for r in runs) for k, _ in PERCENTILES}
        rows.append({"queue": label, "runs": runs, "median_us": med,
                     "idle_cpu_s": statistics.median(idle)})
    report = {"trips": trips, "repeats": repeats, "item_bytes": len(ITEM),
              "idle_seconds": IDLE_SECONDS, "machine": harness.machine_info(),
              "results": rows, "skipped": skipped}
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "latency.json"), "w") as f:
            json.dump(report, f, indent=1)
        if charts:
            draw_histogram(samples, os.path.join(out_dir, "latency.png"))
    return report


def draw_histogram(samples: Dict[str, List[int]], path: str) -> Optional[str]:
    """Round-trip histograms, one line per queue, log-scaled time axis."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lo = max(0.01, 0.9 * min(min(t) for t in samples.values()) / 1000.0)
    hi = 1.1 * max(max(t) for t in samples.values()) / 1000.0
    bins = np.logspace(np.log10(lo), np.log10(hi), 120)
    for label, t in samples.items():
        us = np.asarray(t, dtype=float) / 1000.0
        counts, edges = np.histogram(us, bins=bins)
        ax.step(edges[:-1], counts / len(us), where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("round trip of a 64-byte item between two processes (us)")
    ax.set_ylabel("fraction of round trips")
    ax.set_title("queue round-trip latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(report: Dict[str, Any]) -> str:
    lines = ["| queue | p50 | p90 | p99 | p99.9 | idle waiter CPU |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        m = r["median_us"]
        cpu = 100.0 * r["idle_cpu_s"] / report["idle_seconds"]
        lines.append(f"| {r['queue']} | " + " | ".join(f"{m[k]:.1f} us" for k, _ in PERCENTILES)
                     + f" | {cpu:.1f} % |")
    for label, why in report.get("skipped", {}).items():
        lines.append(f"| {label} | skipped: {why} | | | | |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a latency run (shared by ``shmkit bench --latency``)."""
    p.add_argument("--trips", type=int, default=20000,
                   help="latency: timed round trips per run (default 20000)")


def run_from_args(args: Any) -> int:
    """Run from parsed options (add_arguments plus out, no_charts and
    repeats: runs per queue, each percentile their median; default 3)."""
    harness.QuietPeers(permanent=True).__enter__()
    repeats = args.repeats if args.repeats is not None else 3
    report = run(args.trips, repeats, args.out, not args.no_charts)
    print(format_table(report))
    print(f"\nresults: {os.path.join(args.out, 'latency.json')}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = harness.script_parser("python -m shmkit.bench.latency", __doc__, "latency")
    add_arguments(p)
    p.add_argument("--repeats", type=int, default=None,
                   help="runs per queue, each percentile their median (default 3)")
    return harness.script_main(p, argv, format_table, run_from_args)


if __name__ == "__main__":
    sys.exit(main())

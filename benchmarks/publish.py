#!/usr/bin/env python3
"""Publish a benchmark run into the docs: redraw its charts into
docs/img/bench/ and write docs/BENCHMARKS.md (machine, versions, how to
reproduce, tables, charts), which the README links to.

    shmkit bench --out bench-results          # or --quick
    python benchmarks/publish.py bench-results [--note "measured at ..."]
"""
import argparse
import json
import os
import sys

from shmkit.bench.harness import (collect_targets, draw_charts, evaluate_targets,
                                   format_markdown)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default=os.path.join(ROOT, "bench-results"),
                    help="directory holding results.json (default: bench-results)")
    ap.add_argument("--note", default="", help="a line added under the header")
    args = ap.parse_args(argv)
    with open(os.path.join(args.results, "results.json")) as f:
        report = json.load(f)
    if "targets" not in report and report.get("mode") != "tiny":
        report["targets"] = evaluate_targets(report["results"],
                                             collect_targets(report.get("suites", [])))
    img = os.path.join(ROOT, "docs", "img", "bench")
    os.makedirs(img, exist_ok=True)
    for old in os.listdir(img):
        if old.endswith(".png"):
            os.unlink(os.path.join(img, old))
    report["charts"] = draw_charts(report["results"], img)
    out = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    with open(out, "w") as f:
        f.write(format_markdown(report, chart_dir="img/bench", note=args.note))
    print(f"wrote {out} and {len(report['charts'])} chart(s) in {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

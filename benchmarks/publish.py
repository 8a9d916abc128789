#!/usr/bin/env python3
"""Publish a benchmark run into the docs: copy its PNG charts to
docs/img/bench/ and write docs/BENCHMARKS.md (machine, versions, how to
reproduce, tables, charts), which the README links to.

    shmkit bench --out bench-results          # or --quick
    python benchmarks/publish.py bench-results
"""
import json
import os
import shutil
import sys

from shmkit.bench.harness import format_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    src = argv[0] if argv else os.path.join(ROOT, "bench-results")
    with open(os.path.join(src, "results.json")) as f:
        report = json.load(f)
    img = os.path.join(ROOT, "docs", "img", "bench")
    os.makedirs(img, exist_ok=True)
    for old in os.listdir(img):
        if old.endswith(".png"):
            os.unlink(os.path.join(img, old))
    for path in report.get("charts", []):
        shutil.copy(os.path.join(src, os.path.basename(path)), img)
    out = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    with open(out, "w") as f:
        f.write(format_markdown(report, chart_dir="img/bench"))
    print(f"wrote {out} and {len(report.get('charts', []))} chart(s) in {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
